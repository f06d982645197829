// dtpserve: serve files over DTP (UDP) to any number of dtpget clients. Flags only; the work
// is dl::run_dtpserve().
#include "lib/app/cli.h"
#include "lib/base/units.h"
#include "lib/base/version.h"
#include "lib/dtp/dtp.h"

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dtpserve");
  CLI::App app{"Serve files over DTP: paced, resumable UDP transfers to dtpget.", "dtpserve"};
  app.set_version_flag("--version", std::string("dtpserve ") + dl::kVersionString);
  dl::DtpserveOptions o;
  std::string rate, buffer = "32M", drop, idle = "10";
  bool verbose = false, quiet = false;
  app.add_option("-l,--listen", o.listen, "[HOST:]PORT to listen on (UDP; default 0: any free port, printed)");
  app.add_option("--root", o.root, "Serve files beneath DIR (names resolved beneath it; symlinks may not leave it)");
  app.add_option("files", o.files, "Also serve these files, by their base name");
  app.add_option("--rate", rate, "Total send rate cap, shared by the sessions, e.g. 200M = 200 Mbit/s (default: none)");
  app.add_flag("--fixed-rate", o.fixed_rate, "Send at the cap without loss-driven rate adaptation");
  app.add_option("--max-sessions", o.max_sessions, "Refuse new sessions (busy) beyond this many (default 64)");
  app.add_option("--idle-timeout", idle, "End a session whose client is silent this long (default 10s)");
  app.add_option("--buffer", buffer, "Socket send/receive buffer size (default 32M)");
  app.add_option("--port-file", o.port_file, "Write the bound port number to FILE once listening");
  app.add_option("--drop", drop, "Fault injection: drop this fraction of DATA datagrams before sending (0.1 or 10%)");
  app.add_flag("--reorder", o.faults.reorder, "Fault injection: shuffle the DATA datagrams of each batch");
  app.add_flag("-v,--verbose", verbose, "Say more (listening address, offload)");
  app.add_flag("-q,--quiet", quiet, "Print nothing but fatal errors (no per-session lines)");
  app.footer(std::string(dl::kExitStatusFooter) + "\ndtpserve runs until a signal stops it (130). See dtp(7).");
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;
  auto usage = [&](const dl::Error& e) {
    ctx.say("dtpserve: " + e.message());
    return dl::exit_code(dl::ErrorKind::usage);
  };
  if (o.root.empty() && o.files.empty()) {
    return usage(dl::make_error(dl::ErrorKind::usage, "--root", "give --root DIR or files to serve"));
  }
  if (!rate.empty()) {
    auto r = dl::parse_rate_bits(rate, "--rate");
    if (!r) return usage(r.error());
    o.rate_bits = *r;
  }
  auto b = dl::parse_size(buffer, "--buffer");
  if (!b) return usage(b.error());
  o.buffer_bytes = *b;
  auto it = dl::parse_duration(idle, "--idle-timeout");
  if (!it) return usage(it.error());
  o.idle_timeout_s = *it;
  if (!drop.empty()) {
    auto d = dl::parse_fraction(drop, "--drop");
    if (!d) return usage(d.error());
    o.faults.drop = *d;
  }
  if (o.max_sessions == 0) return usage(dl::make_error(dl::ErrorKind::usage, "--max-sessions", "must be at least 1"));
  o.verbosity.quiet = quiet;
  o.verbosity.verbose = verbose && !quiet;
  return dl::run_dtpserve(o, ctx);
}
