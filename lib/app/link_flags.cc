#include "lib/app/link_flags.h"

#include "lib/base/units.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace dl {

void add_link_flags(CLI::App& app, LinkFlags& f) {
  app.add_option("endpoint", f.endpoint,
                 "HOST:PORT or [IPV6]:PORT or unix:PATH to dial; with -l: [HOST:]PORT or unix:PATH to listen on (port 0: any free port)")
      ->required();
  app.add_flag("-l,--listen", f.listen, "Listen for the peer instead of dialing it");
  app.add_option("--port-file", f.port_file, "With -l: write the bound port number to FILE once listening");
  app.add_option("--proto", f.proto, "Wire protocol: native, classic (the seed Datalink format) or auto (listeners only; default when listening)");
  add_session_flags(app, f);
  app.add_flag("--lines", f.lines, "One message per line (newline-terminated)");
  app.add_flag("--null", f.null, "One message per NUL-terminated record");
  app.add_flag("--framed", f.framed, "Records with length and timestamp (see dl-protocol(7)); keeps message boundaries and timestamps");
  add_output_flags(app, f);
}

void add_session_flags(CLI::App& app, LinkFlags& f) {
  app.add_option("-t,--timeout", f.timeout, "Receive timeout: drop and re-establish the connection after this long without a byte from the peer; 0 or inf: none (default 10s)")
      ->type_name("DURATION");
  app.add_option("--keepalive", f.keepalive, "Send a keepalive after this long without sending; auto (default): native, a third of the shorter receive timeout of both sides; classic, 30ms (the seed's examples time out after 100 ms); inf: never")
      ->type_name("DURATION");
  app.add_option("-w,--wait", f.wait, "How long to keep trying to reach the first peer; 0: one attempt (dial default); inf: forever (listen default)")
      ->type_name("DURATION")
      ->each([&f](const std::string&) { f.wait_given = true; });
  app.add_option("--reconnect", f.reconnect, "After a connection drops, keep trying this long before giving up (exit 5); inf: forever (default 60s)")
      ->type_name("DURATION");
  app.add_option("--max-message", f.max_message, "Largest message accepted or sent, e.g. 65536, 64K, 16M (default 16M)");
  app.add_flag("--drop-negative-ts", f.drop_negative_ts, "Classic protocol: drop frames whose timestamp is negative, as the seed does (default: deliver them and warn)");
  app.add_option("--allow", f.allow, "Listening: accept connections only from ADDR or ADDR/LEN (repeatable; IPv4 or IPv6); others are reset before a byte is read. Without it (and without keys) the first dialer is trusted")
      ->type_name("ADDR[/LEN]");
  app.add_flag("--close-ends", f.close_ends, "Classic protocol: an orderly close by the peer ends the stream (default: a close is a drop; a dialer reconnects, a listener waits for the next connection)");
  add_key_flags(app, f.tls);
}

void add_output_flags(CLI::App& app, LinkFlags& f, bool with_progress) {
  app.add_flag("-v,--verbose", f.verbose, "Report connections and print a summary line at the end");
  app.add_flag("-q,--quiet", f.quiet, "Print nothing but fatal errors");
  if (with_progress) app.add_flag("--progress", f.progress, "Show progress on stderr even when it is not a terminal");
  app.footer(kExitStatusFooter);
}

namespace {

// Whole milliseconds for a link timer (rounded up, so 0.1ms is 1 ms, not "off"); the wire
// carries them as 32 bits and the link as an int, hence the ceiling.
Result<int> duration_ms(double seconds, const std::string& flag, const std::string& text) {
  constexpr double kMaxMs = 2147483647.0;  // about 24.8 days
  double ms = std::ceil(seconds * 1000.0);
  if (ms > kMaxMs) {
    return make_error(ErrorKind::usage, flag + " '" + text + "'", "at most 24 days; say inf for no limit");
  }
  return static_cast<int>(ms);
}

// A deadline in seconds for LinkOptions, where < 0 means forever.
double deadline_seconds(double seconds) { return std::isinf(seconds) ? -1.0 : seconds; }

}  // namespace

Result<LinkOptions> link_options(const LinkFlags& f) {
  LinkOptions o;
  o.listen = f.listen;
  auto ep = f.listen ? parse_listen_endpoint(f.endpoint) : parse_dial_endpoint(f.endpoint);
  if (!ep) return ep.error();
  o.endpoint = *ep;
  if (!o.endpoint.is_stream()) {
    return make_error(ErrorKind::usage, "endpoint " + f.endpoint,
                      "links run over TCP or unix sockets; udp: is for dlping and the DTP tools");
  }
  if (!f.allow.empty()) {
    if (!f.listen) return make_error(ErrorKind::usage, "--allow", "only for a listener (a dialer chooses its peer)");
    auto allow = AllowList::parse(f.allow);
    if (!allow) return allow.error();
    o.allow = *allow;
  }
  std::string proto = f.proto.empty() ? (f.listen ? "auto" : "native") : f.proto;
  auto p = parse_proto(proto);
  if (!p) return p.error();
  if (*p == Proto::automatic && !f.listen) {
    return make_error(ErrorKind::usage, "--proto auto",
                      "only a listener can detect the peer's protocol; dial with native or classic");
  }
  o.proto = *p;

  // --timeout: 0 and inf both mean "no receive timeout" (0 on the wire).
  auto timeout = parse_duration(f.timeout, "--timeout");
  if (!timeout) return timeout.error();
  o.timeout_ms = 0;
  if (!std::isinf(*timeout)) {
    auto ms = duration_ms(*timeout, "--timeout", f.timeout);
    if (!ms) return ms.error();
    o.timeout_ms = *ms;
  }
  // --keepalive: auto (0 in LinkOptions), inf = never (-1), else a positive interval.
  o.keepalive_ms = 0;
  if (f.keepalive != "auto") {
    auto ka = parse_duration(f.keepalive, "--keepalive");
    if (!ka) return ka.error();
    if (std::isinf(*ka)) {
      o.keepalive_ms = -1;
    } else {
      if (*ka <= 0) {
        return make_error(ErrorKind::usage, "--keepalive '" + f.keepalive + "'",
                          "must be more than 0 (say auto for the default, inf for none)");
      }
      auto ms = duration_ms(*ka, "--keepalive", f.keepalive);
      if (!ms) return ms.error();
      o.keepalive_ms = *ms;
      if (o.timeout_ms > 0 && o.keepalive_ms >= o.timeout_ms) {
        return make_error(ErrorKind::usage, "--keepalive", "must be shorter than --timeout, or the link times itself out");
      }
    }
  }
  if (!f.wait_given) {
    o.wait_s = f.listen ? -1 : 0;
  } else {
    auto w = parse_duration(f.wait, "--wait");
    if (!w) return w.error();
    o.wait_s = deadline_seconds(*w);
  }
  auto r = parse_duration(f.reconnect, "--reconnect");
  if (!r) return r.error();
  o.reconnect_s = deadline_seconds(*r);

  auto mm = parse_size(f.max_message, "--max-message");
  if (!mm) return mm.error();
  if (*mm == 0 || *mm > frame::kHardMaxPayload) {
    return make_error(ErrorKind::usage, "--max-message " + f.max_message, "must be between 1 and 1G");
  }
  o.max_message = static_cast<std::uint32_t>(*mm);
  o.drop_negative_ts = f.drop_negative_ts;
  o.close_ends = f.close_ends;
  if (f.tls.any()) {
    if (auto st = TlsConfig::check(f.tls, f.listen ? TlsRole::listener : TlsRole::dialer); !st) return st.error();
    o.tls = f.tls;
  }
  if (!f.port_file.empty() && !f.listen) {
    return make_error(ErrorKind::usage, "--port-file", "only with -l (a dialer has no port to report)");
  }
  return o;
}

Result<std::uint64_t> parse_count(std::string_view text, std::string_view flag) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  std::string ctx = std::string(flag) + " '" + std::string(text) + "'";
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return make_error(ErrorKind::usage, ctx, "expected a whole number of messages, at least 1");
  }
  if (v == 0) return make_error(ErrorKind::usage, ctx, "must be at least 1 (leave it out for no limit)");
  return v;
}

Result<MessageMode> message_mode(const LinkFlags& f) {
  int n = int(f.lines) + int(f.null) + int(f.framed);
  if (n > 1) return make_error(ErrorKind::usage, "--lines, --null, --framed", "choose one");
  if (f.lines) return MessageMode::lines;
  if (f.null) return MessageMode::null;
  if (f.framed) return MessageMode::framed;
  return MessageMode::raw;
}

Verbosity verbosity(const LinkFlags& f) {
  Verbosity v;
  v.quiet = f.quiet;
  v.verbose = f.verbose && !f.quiet;
  if (f.progress) v.progress = true;
  return v;
}

}  // namespace dl
