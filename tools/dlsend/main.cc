// dlsend: read stdin (or a file) and send it over a self-healing link. Flags only; the work
// is dl::run_dlsend().
#include <algorithm>

#include "lib/app/link_flags.h"
#include "lib/base/version.h"

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("dlsend");
  CLI::App app{"Send stdin as messages over a self-healing TCP link, delivered exactly once and in order.", "dlsend"};
  app.set_version_flag("--version", std::string("dlsend ") + dl::kVersionString);
  dl::LinkFlags f;
  dl::DlsendOptions o;
  std::string chunk, fixed, window = "8M";
  dl::add_link_flags(app, f);
  app.add_option("-f,--file", o.file, "Read FILE instead of stdin");
  app.add_option("--chunk", chunk, "Raw mode: largest message cut from the input; shorter only where the input pauses or ends (default 1M)");
  app.add_option("--fixed", fixed, "Raw mode: every message exactly N bytes, the last one possibly shorter (like dd iflag=fullblock)")
      ->type_name("N");
  app.add_option("--window", window, "Replay buffer: how much unacknowledged data may be in flight (default 8M, at most 1G; grows to hold one message)");
  if (auto rc = dl::parse_command_line(app, argc, argv, ctx)) return *rc;

  auto usage = [&](const std::string& line) {
    ctx.say("dlsend: " + line);
    return dl::exit_code(dl::ErrorKind::usage);
  };
  auto lo = dl::link_options(f);
  auto mode = dl::message_mode(f);
  auto c = dl::parse_size(fixed.empty() ? (chunk.empty() ? "1M" : chunk) : fixed, fixed.empty() ? "--chunk" : "--fixed");
  auto w = dl::parse_size(window, "--window");
  for (const dl::Error* e : {lo ? nullptr : &lo.error(), mode ? nullptr : &mode.error(),
                             c ? nullptr : &c.error(), w ? nullptr : &w.error()}) {
    if (e) return usage(e->message());
  }
  // The replay ring is memory: a window beyond 1G is a typo, not a plan (and a receiver's credit
  // bounds what is in flight anyway).
  if (*w == 0 || *w > (std::uint64_t(1) << 30)) return usage("--window " + window + ": must be between 1 and 1G");
  if (!fixed.empty()) {
    if (!chunk.empty()) return usage("--chunk, --fixed: choose one");
    if (*mode != dl::MessageMode::raw) return usage("--fixed: only in raw mode (not with --lines, --null or --framed)");
    if (*c == 0) return usage("--fixed " + fixed + ": must be at least 1");
    if (*c > lo->max_message) {
      return usage("--fixed " + fixed + ": larger than --max-message (" + std::to_string(lo->max_message) + " bytes)");
    }
    o.fixed = true;
  } else if (*c == 0) {
    return usage("--chunk " + chunk + ": must be at least 1");
  }
  o.link = *lo;
  o.link.window = *w;
  o.mode = *mode;
  o.chunk = std::min<std::uint64_t>(*c, lo->max_message);  // raw chunks never exceed the limit
  o.port_file = f.port_file;
  o.verbosity = dl::verbosity(f);
  return dl::run_dlsend(o, ctx);
}
