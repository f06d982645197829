// dlrecv: receive messages over a self-healing link and write them to stdout (or a file).
// Flags only; the work is dl::run_dlrecv().
#include "lib/app/link_flags.h"
#include "lib/base/version.h"

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dlrecv");
  CLI::App app{"Receive messages over a self-healing TCP link and write them to stdout, exactly once and in order.", "dlrecv"};
  app.set_version_flag("--version", std::string("dlrecv ") + dl::kVersionString);
  dl::LinkFlags f;
  dl::DlrecvOptions o;
  bool keep_open = false;
  long long count = 0;
  dl::add_link_flags(app, f);
  app.add_option("-o,--output", o.output, "Write to FILE instead of stdout");
  app.add_option("-n,--count", count, "Exit after N messages (exit 0 only once N arrived)");
  app.add_flag("--keep-open", keep_open, "With -l: after a session ends, wait for the next one");
  app.add_option("--timestamps", o.timestamps, "Log each message's timestamp, seq and size, one line each, to stderr or to FILE")
      ->expected(0, 1)
      ->default_str("");
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;

  auto lo = dl::link_options(f);
  auto mode = dl::message_mode(f);
  for (const dl::Error* e : {lo ? nullptr : &lo.error(), mode ? nullptr : &mode.error()}) {
    if (e) {
      ctx.say("dlrecv: " + e->message());
      return dl::exit_code(dl::ErrorKind::usage);
    }
  }
  if (count < 0) {
    ctx.say("dlrecv: --count " + std::to_string(count) + ": must be at least 0 (0: no limit)");
    return dl::exit_code(dl::ErrorKind::usage);
  }
  o.count = static_cast<std::uint64_t>(count);
  if (keep_open && !f.listen) {
    ctx.say("dlrecv: --keep-open: only with -l (a dialer has one session)");
    return dl::exit_code(dl::ErrorKind::usage);
  }
  o.link = *lo;
  o.link.keep_open = keep_open;
  o.mode = *mode;
  o.port_file = f.port_file;
  o.verbosity = dl::verbosity(f);
  return dl::run_dlrecv(o, ctx);
}
