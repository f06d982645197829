// dlping: honest latency measurement (client) and its responder (-l). Flags only; the work is
// dl::ping::run_dlping().
#include <cmath>

#include "lib/app/cli.h"
#include "lib/base/units.h"
#include "lib/base/version.h"
#include "lib/ping/dlping.h"

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dlping");
  CLI::App app{"Measure round-trip latency, loss, jitter and rate stability to a dlping responder (or a "
               "fastSocket server), or be the responder (-l).",
               "dlping"};
  app.set_version_flag("--version", std::string("dlping ") + dl::kVersionString);
  dl::ping::DlpingOptions o;
  std::string proto = "native", interval, deadline, size = "64", sweep, timeout = "2", reply_delay, turnaround;
  double rate = 0;
  bool quiet = false, verbose = false;
  app.add_option("endpoint", o.endpoint, "HOST:PORT, unix:PATH or udp:HOST:PORT to measure; with -l, [HOST:]PORT to answer on")
      ->required();
  app.add_flag("-l,--listen", o.listen, "Be the responder: answer probes on ENDPOINT");
  app.add_option("--proto", proto, "native (default: the three-way PING/PONG/ACK3) or fastsocket (its JSON lines)")
      ->check(CLI::IsMember({"native", "fastsocket"}));
  app.add_option("-c,--count", o.count, "Probes to send (per size with --sweep); default: until -w or Ctrl-C");
  app.add_option("-i,--interval", interval, "Time between probes (default 1s; 10ms, 100us ...)");
  app.add_option("--rate", rate, "Probes per second (instead of -i)");
  app.add_option("-w,--deadline", deadline, "Stop sending after this long (client); stop answering (responder)");
  app.add_option("-s,--size", size, "Probe payload bytes (native: at least 64, default 64; fastsocket: payload string length)");
  app.add_option("--sweep", sweep, "Several sizes, one phase each: 64,1K,16K or 64:64K (doubling)");
  app.add_option("--warmup", o.warmup, "Probes per size exchanged first and not counted");
  app.add_flag("--flood", o.flood, "Back to back: the next probe as soon as a reply frees the window");
  app.add_option("--window", o.window, "With --flood: probes in flight at once (default 1)");
  app.add_option("--timeout", timeout, "A probe unanswered this long counts as timed out (default 2s)");
  app.add_option("--min-rate", o.min_rate, "Count the reply intervals slower than this many per second");
  app.add_option("--every", o.every, "Print a line for every Nth reply (default 1; 0: none; --flood: 0)");
  app.add_flag("--json", o.json, "Print the summary as JSON (with the histogram buckets) on stdout");
  app.add_option("--csv", o.csv_path, "Write every sample to FILE as CSV");
  app.add_option("--plot", o.plot_path, "Write an SVG picture to FILE: RTT over time and its histogram");
  app.add_flag("--histogram", o.histogram, "Add a terminal histogram of the RTTs to the summary");
  app.add_option("--cpu", o.cpu, "Pin dlping to this CPU (as taskset -c CPU)");
  app.add_flag("--busy-poll", o.busy_poll, "Spin on the socket instead of sleeping (lower latency, a whole CPU)");
  app.add_option("--port-file", o.port_file, "Responder: write the port listened on to FILE");
  app.add_option("--reply-delay", reply_delay, "Responder: hold each probe this long before stamping it received (like a slower path)");
  app.add_option("--turnaround", turnaround, "Responder: hold each reply this long between its stamps (removed from the RTT)");
  dl::add_key_flags(app, o.tls);
  app.add_flag("-q,--quiet", quiet, "No per-probe lines (the summary still)");
  app.add_flag("-v,--verbose", verbose, "More detail: timeouts, the responder's per-probe lines");
  app.footer(std::string(dl::kExitStatusFooter) +
             "\ndlping: 0 means at least one reply came back; 7, that none did.");
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;

  auto usage = [&](const std::string& msg) {
    ctx.say("dlping: " + msg);
    return dl::exit_code(dl::ErrorKind::usage);
  };
  auto dur = [&](const std::string& text, const char* flag, double& out) -> bool {
    if (text.empty()) return true;
    auto d = dl::parse_duration(text, flag);
    if (!d) {
      ctx.say("dlping: " + d.error().message());
      return false;
    }
    out = *d;
    return true;
  };
  o.proto = proto == "fastsocket" ? dl::ping::Proto::fastsocket : dl::ping::Proto::native;
  bool udp = o.endpoint.rfind("udp:", 0) == 0;
  std::uint32_t max_size = udp ? 65507 - 32 : 16u << 20;
  if (!dur(interval, "--interval", o.interval_s) || !dur(deadline, "--deadline", o.deadline_s) ||
      !dur(timeout, "--timeout", o.timeout_s) || !dur(reply_delay, "--reply-delay", o.reply_delay_s) ||
      !dur(turnaround, "--turnaround", o.turnaround_s))
    return dl::exit_code(dl::ErrorKind::usage);
  if (app.count("--rate") > 0) {
    if (!interval.empty()) return usage("--rate and -i both set the interval: use one");
    if (!(rate > 0) || !std::isfinite(rate)) return usage("--rate must be a positive number of probes per second");
    o.interval_s = 1.0 / rate;
  }
  if (!(o.interval_s > 0) && !o.flood) return usage("-i must be more than 0 (for back-to-back probes use --flood)");
  if (o.window == 0) return usage("--window must be at least 1");
  if (o.window > 1 && !o.flood) return usage("--window needs --flood");
  if (!(o.timeout_s > 0)) return usage("--timeout must be more than 0");
  if (o.min_rate < 0 || !std::isfinite(o.min_rate)) return usage("--min-rate must be a positive number");
  if (!sweep.empty()) {
    auto s = dl::ping::parse_sweep(sweep, max_size);
    if (!s) return usage(s.error().message());
    o.sizes = *s;
    if (o.count == 0) o.count = 100;  // a sweep needs an end to each phase
  } else {
    auto s = dl::parse_size(size, "--size");
    if (!s) return usage(s.error().message());
    if (*s > max_size) return usage("--size " + size + ": at most " + std::to_string(max_size) + (udp ? " over udp" : ""));
    o.sizes = {static_cast<std::uint32_t>(*s)};
  }
  if (o.proto == dl::ping::Proto::native) {
    for (auto s : o.sizes)
      if (s < 64) return usage("--size " + std::to_string(s) + ": a native probe carries 64 bytes of stamps; use at least 64");
  }
  if (o.flood && app.count("--every") == 0) o.every = 0;
  o.verbosity.quiet = quiet;
  o.verbosity.verbose = verbose;
  if (o.listen) {
    for (const char* flag : {"--json", "--csv", "--plot", "--histogram", "--count", "--interval", "--rate", "--size",
                             "--sweep", "--warmup", "--flood", "--window", "--timeout", "--min-rate", "--every"}) {
      if (app.count(flag) > 0)
        return usage(std::string(flag) + " is the client's (the responder answers what it gets and prints per-session summaries)");
    }
  }
  if (!o.listen && (o.reply_delay_s > 0 || o.turnaround_s > 0 || !o.port_file.empty()))
    return usage("--reply-delay, --turnaround and --port-file are the responder's (-l)");
  return dl::ping::run_dlping(o, ctx);
}
