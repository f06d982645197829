// dlbridge: join two endpoints that cannot reach each other, storing and forwarding. Flags
// only; the work is dl::bridge::run_dlbridge().
#include <cctype>

#include "lib/app/link_flags.h"
#include "lib/base/units.h"
#include "lib/base/version.h"
#include "lib/bridge/bridge.h"

namespace {

// "listen:SPEC" or a bare port listens; anything else dials.
void split_side(const std::string& text, dl::LinkFlags& f) {
  bool digits = !text.empty();
  for (char c : text) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  f.listen = digits || text.starts_with("listen:");
  f.endpoint = text.starts_with("listen:") ? text.substr(7) : text;
}

}  // namespace

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dlbridge");
  CLI::App app{"Join two endpoints that cannot reach each other: forward messages both ways, each side "
               "reconnecting on its own, holding what arrives while the other side is down.",
               "dlbridge"};
  app.set_version_flag("--version", std::string("dlbridge ") + dl::kVersionString);
  dl::LinkFlags common;
  std::string a, b, proto_a, proto_b, stats_interval, window = "2M", tls_side, splice;
  std::vector<std::string> faults;
  dl::bridge::DlbridgeOptions o;
  app.add_option("a", a, "Side a: HOST:PORT, [IPV6]:PORT or unix:PATH to dial; listen:[HOST:]PORT, listen:unix:PATH or a bare PORT to listen")
      ->required();
  app.add_option("b", b, "Side b: same forms as side a")->required();
  app.add_option("--proto-a", proto_a, "Side a's wire protocol: native, classic or auto (listeners; the default when listening)");
  app.add_option("--proto-b", proto_b, "Side b's wire protocol: native, classic or auto (listeners; the default when listening)");
  app.add_option("--port-file-a", o.side[0].port_file, "Side a listens: write its bound port to FILE");
  app.add_option("--port-file-b", o.side[1].port_file, "Side b listens: write its bound port to FILE");
  app.add_flag("--raw", o.raw, "Forward plain TCP bytes (any protocol): one connection to b per client of a, half-close passed through");
  app.add_flag("--fanout", o.fanout, "Side a listens for several clients, each its own session (with --raw: its own connection); what b sends goes to all of them, what any of them sends goes to b");
  app.add_option("--splice", splice, "With --raw: auto (splice(2) unless both peers are on this host, where a copy is faster), on or off")
      ->type_name("MODE");
  app.add_option("--fault", faults, "Inject faults for testing: [a:|b:]cut=BYTES, cut-every=DURATION, latency=DURATION, jitter=DURATION, rate=BITS/S (repeatable)");
  app.add_option("--stats-interval", stats_interval, "Print counters every DURATION (also on SIGUSR1)");
  app.add_option("--window", window, "Per direction: how much may be in flight downstream before the bridge stops reading upstream (default 2M, at most 1G; acknowledgement is end to end, so this counts against the sender's own window: raise both for a long, fast downstream hop)");
  app.add_option("--tls-side", tls_side, "With keys: which side speaks TLS: a, b or both (default both); the other side stays plain, e.g. for a seed peer on a lab network")
      ->type_name("SIDE");
  dl::add_session_flags(app, common);
  dl::add_output_flags(app, common, /*with_progress=*/false);
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;

  auto usage = [&](const dl::Error& e) {
    ctx.say("dlbridge: " + e.message());
    return dl::exit_code(dl::ErrorKind::usage);
  };
  auto win = dl::parse_size(window, "--window");
  if (!win) return usage(win.error());
  // As dlsend's: a ring per side is memory, and a classic side has no sender's window to bound it.
  if (*win == 0 || *win > (std::uint64_t(1) << 30)) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--window " + window, "must be between 1 and 1G"));
  }
  if (!tls_side.empty() && tls_side != "a" && tls_side != "b" && tls_side != "both") {
    return usage(dl::make_error(dl::ErrorKind::usage, "--tls-side " + tls_side, "expected a, b or both"));
  }
  if (o.raw && common.tls.any()) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--raw", "relays bytes as they are: no keys (run TLS end to end instead)"));
  }
  if (o.raw) {
    // Message-mode settings: a byte relay has no frames, sessions or reconnects to apply them to.
    for (const char* name : {"--proto-a", "--proto-b", "--timeout", "--keepalive", "--reconnect", "--max-message",
                             "--drop-negative-ts", "--close-ends", "--window"}) {
      if (app.count(name) > 0) {
        return usage(dl::make_error(dl::ErrorKind::usage, std::string(name) + " with --raw",
                                    "a message-mode setting: --raw relays bytes as they are"));
      }
    }
  }
  if (!tls_side.empty() && !common.tls.any()) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--tls-side", "only with keys (--psk, --gen-psk, --cert ...)"));
  }
  const std::string* texts[2] = {&a, &b};
  const std::string* protos[2] = {&proto_a, &proto_b};
  for (int i = 0; i < 2; ++i) {
    dl::LinkFlags f = common;
    if (tls_side == (i == 0 ? "b" : "a")) f.tls = {};  // this side stays plain
    split_side(*texts[i], f);
    if (!f.listen) f.allow.clear();  // --allow is for the listening sides; a dialer chooses its peer
    f.proto = *protos[i];
    f.port_file = o.side[i].port_file;
    auto lo = dl::link_options(f);
    if (!lo) {
      dl::Error e = lo.error();
      e.context = std::string(i == 0 ? "side a: " : "side b: ") + e.context;
      return usage(e);
    }
    o.side[i].link = *lo;
    o.side[i].link.window = *win;
  }
  if (!common.allow.empty() && !o.side[0].link.listen && !o.side[1].link.listen) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--allow", "only for a listening side (both sides dial)"));
  }
  if (!splice.empty()) {
    if (!o.raw) return usage(dl::make_error(dl::ErrorKind::usage, "--splice", "only with --raw"));
    if (splice == "on") o.splice = dl::bridge::SpliceMode::on;
    else if (splice == "off") o.splice = dl::bridge::SpliceMode::off;
    else if (splice != "auto") return usage(dl::make_error(dl::ErrorKind::usage, "--splice " + splice, "expected auto, on or off"));
  }
  if (o.fanout && !o.side[0].link.listen) return usage(dl::make_error(dl::ErrorKind::usage, "--fanout", "side a must listen: it is where the clients come"));
  for (const std::string& spec : faults) {
    if (auto st = dl::bridge::parse_fault(spec, o.faults); !st) return usage(st.error());
  }
  if (o.fanout && !o.raw && o.side[0].link.proto == dl::Proto::classic) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--fanout --proto-a classic", "message fanout serves native clients (classic has no sessions to tell them apart)"));
  }
  // Neither fanout has a fault path: refused rather than a test that injects nothing.
  if (o.fanout && !faults.empty()) return usage(dl::make_error(dl::ErrorKind::usage, "--fault", "not with --fanout in this version"));
  if (!stats_interval.empty()) {
    auto s = dl::parse_duration(stats_interval, "--stats-interval");
    if (!s) return usage(s.error());
    o.stats_interval_s = *s;
  }
  o.verbosity = dl::verbosity(common);
  o.verbosity.progress = false;  // two links and two directions: counters, not a progress line
  return dl::bridge::run_dlbridge(o, ctx);
}
