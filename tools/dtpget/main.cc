// dtpget: fetch one payload from a dtpserve over DTP (UDP), resumably. Flags only; the work
// is dl::run_dtpget().
#include "lib/app/cli.h"
#include "lib/base/units.h"
#include "lib/base/version.h"
#include "lib/dtp/dtp.h"

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dtpget");
  CLI::App app{"Fetch a payload from dtpserve over DTP: paced UDP with re-request passes, resumable.", "dtpget"};
  app.set_version_flag("--version", std::string("dtpget ") + dl::kVersionString);
  dl::DtpgetOptions o;
  std::string rate, range, deadline, timeout = "10", save = "1", buffer = "32M", drop;
  bool verbose = false, quiet = false, progress = false;
  app.add_option("server", o.server, "HOST:PORT of the dtpserve (not needed with --resume)");
  app.add_option("name", o.name, "Payload name on the server (not needed with --resume)");
  app.add_option("-o,--output", o.output, "Write to FILE (default: the name's base name); - streams the in-order prefix to stdout");
  app.add_option("--session", o.session, "Session file (default: OUTPUT.dtp-session)");
  app.add_option("--resume", o.resume, "Continue the transfer saved in session FILE");
  app.add_flag("--restart", o.restart, "Ignore a saved session and fetch everything again");
  app.add_option("--info", o.info, "Print what session FILE holds and what is missing, then exit");
  app.add_option("--range", range, "Fetch only these byte ranges: START-END (END exclusive), START-, LENGTH@START, comma-separated; sizes may be sums like 4G+1M");
  app.add_option("--rate", rate, "Ask the server to send at most this fast, e.g. 200M = 200 Mbit/s");
  app.add_option("--mtu", o.mtu, "IP MTU of the path; datagrams are sized to fit it (default 1500)");
  app.add_option("-w,--deadline", deadline, "Give up after this long (e.g. 30s, 5m), saving the session (exit 9)");
  app.add_option("-t,--timeout", timeout, "Give up when the server is silent this long (default 10s)");
  app.add_option("--save-interval", save, "Rewrite the session file this often while receiving (default 1s)");
  app.add_option("--buffer", buffer, "Socket receive buffer size (default 32M)");
  app.add_option("--drop", drop, "Fault injection: drop this fraction of the DATA datagrams received (0.1 or 10%)");
  app.add_flag("--reorder", o.faults.reorder, "Fault injection: shuffle the datagrams of each received batch");
  app.add_flag("-v,--verbose", verbose, "Print a summary line at the end");
  app.add_flag("-q,--quiet", quiet, "Print nothing but fatal errors");
  app.add_flag("--progress", progress, "Show progress on stderr even when it is not a terminal");
  app.footer(std::string(dl::kExitStatusFooter) +
             "\ndtpget: 0 means complete and SHA-256 verified; 9, stopped with the session saved (--resume).");
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;
  auto usage = [&](const dl::Error& e) {
    ctx.say("dtpget: " + e.message());
    return dl::exit_code(dl::ErrorKind::usage);
  };
  bool need_args = o.resume.empty() && o.info.empty();
  if (need_args && (o.server.empty() || o.name.empty())) {
    return usage(dl::make_error(dl::ErrorKind::usage, "arguments", "need HOST:PORT and NAME (or --resume FILE, --info FILE)"));
  }
  if (!o.resume.empty() && !o.info.empty()) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--resume, --info", "choose one"));
  }
  if (!range.empty()) {
    auto r = dl::parse_ranges(range);
    if (!r) return usage(r.error());
    o.ranges = *r;
  }
  if (!rate.empty()) {
    auto r = dl::parse_rate_bits(rate, "--rate");
    if (!r) return usage(r.error());
    o.rate_bits = *r;
  }
  if (!deadline.empty()) {
    auto d = dl::parse_duration(deadline, "--deadline");
    if (!d) return usage(d.error());
    o.deadline_s = *d;
  }
  auto t = dl::parse_duration(timeout, "--timeout");
  if (!t) return usage(t.error());
  o.timeout_s = *t;
  auto s = dl::parse_duration(save, "--save-interval");
  if (!s) return usage(s.error());
  if (*s <= 0) return usage(dl::make_error(dl::ErrorKind::usage, "--save-interval", "must be positive"));
  o.save_interval_s = *s;
  auto b = dl::parse_size(buffer, "--buffer");
  if (!b) return usage(b.error());
  o.buffer_bytes = *b;
  if (!drop.empty()) {
    auto d = dl::parse_fraction(drop, "--drop");
    if (!d) return usage(d.error());
    o.faults.drop = *d;
  }
  o.verbosity.quiet = quiet;
  o.verbosity.verbose = verbose && !quiet;
  if (progress) o.verbosity.progress = true;
  return dl::run_dtpget(o, ctx);
}
