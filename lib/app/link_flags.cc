#include "lib/app/link_flags.h"

#include "lib/base/units.h"

#include <cctype>
#include <charconv>

namespace dl {

void add_link_flags(CLI::App& app, LinkFlags& f) {
  app.add_option("endpoint", f.endpoint,
                 "HOST:PORT or [IPV6]:PORT or unix:PATH to dial; with -l: [HOST:]PORT or unix:PATH to listen on (port 0: any free port)")
      ->required();
  app.add_flag("-l,--listen", f.listen, "Listen for the peer instead of dialing it");
  app.add_option("--port-file", f.port_file, "With -l: write the bound port number to FILE once listening");
  app.add_option("--proto", f.proto, "Wire protocol: native, classic (the seed Datalink format) or auto (listeners only; default when listening)");
  app.add_option("-t,--timeout", f.timeout_ms, "Receive timeout in ms: drop and re-establish the connection after this long without a byte from the peer; 0 disables (default 10000)");
  app.add_option("-k,--keepalive", f.keepalive_ms, "Keepalive interval in ms (default: native, a third of the shorter receive timeout of both sides; classic, 30 ms, since the seed's examples time out after 100 ms)");
  app.add_option("-w,--wait", f.wait_s, "Seconds to keep trying to reach the first peer (dial default 0: fail at once; listen default: forever)");
  app.add_option("--reconnect", f.reconnect_s, "Seconds to keep trying after a connection drops before giving up; negative: forever (default 60)");
  app.add_option("--max-message", f.max_message, "Largest message accepted or sent, e.g. 65536, 64K, 16M (default 16M)");
  app.add_flag("--drop-negative-ts", f.drop_negative_ts, "Classic protocol: drop frames whose timestamp is negative, as the seed does (default: deliver them and warn)");
  app.add_flag("--close-ends", f.close_ends, "Classic protocol: an orderly close by the peer ends the stream (default: a close is a drop; a dialer reconnects, a listener waits for the next connection)");
  app.add_flag("--lines", f.lines, "One message per line (newline-terminated)");
  app.add_flag("--null", f.null, "One message per NUL-terminated record");
  app.add_flag("--framed", f.framed, "Records with length and timestamp (see dl-protocol(7)); keeps message boundaries and timestamps");
  app.add_flag("-v,--verbose", f.verbose, "Report connections and print a summary line at the end");
  app.add_flag("-q,--quiet", f.quiet, "Print nothing but fatal errors");
  app.add_flag("--progress", f.progress, "Show progress on stderr even when it is not a terminal");
  app.footer(
      "Exit status: 0 ok, 1 local I/O error, 2 usage, 3 cannot resolve, 4 cannot connect/bind,\n"
      "5 disconnected (peer gone past --reconnect), 6 protocol error, 7 timeout, 8 message too large,\n"
      "130 interrupted. Signals: SIGUSR1 prints statistics. See the man page for more.");
}

Result<LinkOptions> link_options(const LinkFlags& f) {
  LinkOptions o;
  o.listen = f.listen;
  auto ep = f.listen ? parse_listen_endpoint(f.endpoint) : parse_dial_endpoint(f.endpoint);
  if (!ep) return ep.error();
  o.endpoint = *ep;
  std::string proto = f.proto.empty() ? (f.listen ? "auto" : "native") : f.proto;
  auto p = parse_proto(proto);
  if (!p) return p.error();
  if (*p == Proto::automatic && !f.listen) {
    return make_error(ErrorKind::usage, "--proto auto",
                      "only a listener can detect the peer's protocol; dial with native or classic");
  }
  o.proto = *p;
  if (f.timeout_ms < 0) return make_error(ErrorKind::usage, "--timeout", "must be >= 0");
  if (f.keepalive_ms < 0) return make_error(ErrorKind::usage, "--keepalive", "must be >= 0");
  o.timeout_ms = f.timeout_ms;
  o.keepalive_ms = f.keepalive_ms;
  if (f.timeout_ms > 0 && f.keepalive_ms >= f.timeout_ms) {
    return make_error(ErrorKind::usage, "--keepalive", "must be shorter than --timeout, or the link times itself out");
  }
  o.wait_s = f.wait_s >= 0 ? f.wait_s : (f.listen ? -1 : 0);
  o.reconnect_s = f.reconnect_s;
  auto mm = parse_size(f.max_message, "--max-message");
  if (!mm) return mm.error();
  if (*mm == 0 || *mm > frame::kHardMaxPayload) {
    return make_error(ErrorKind::usage, "--max-message " + f.max_message, "must be between 1 and 1G");
  }
  o.max_message = static_cast<std::uint32_t>(*mm);
  o.drop_negative_ts = f.drop_negative_ts;
  o.close_ends = f.close_ends;
  if (!f.port_file.empty() && !f.listen) {
    return make_error(ErrorKind::usage, "--port-file", "only with -l (a dialer has no port to report)");
  }
  return o;
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

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::puts(e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    ctx.say(ctx.program + ": " + what + " (see --help)");
    return exit_code(ErrorKind::usage);
  }
  return std::nullopt;
}

}  // namespace dl
