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
  dl::add_link_flags(app, f);
  app.add_option("-o,--output", o.output, "Write to FILE instead of stdout");
  std::string count, count_n;
  app.add_option("-c,--count", count, "Exit after N messages (N at least 1)")->type_name("N");
  app.add_option("-n", count_n, "")->group("");  // the old spelling of -c, kept for scripts
  app.add_flag("-k,--keep-open", keep_open, "With -l: after a session ends, wait for the next one");
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
  if (!count.empty() && !count_n.empty()) {
    ctx.say("dlrecv: -c, -n: choose one (-n is the old spelling of -c)");
    return dl::exit_code(dl::ErrorKind::usage);
  }
  if (!count.empty() || !count_n.empty()) {
    auto n = dl::parse_count(count.empty() ? count_n : count, count.empty() ? "-n" : "--count");
    if (!n) {
      ctx.say("dlrecv: " + n.error().message());
      return dl::exit_code(dl::ErrorKind::usage);
    }
    o.count = *n;
  }
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
