// link_flags: the command-line flags every link tool shares, defined once with CLI11, and
// their checks (conflicts, ranges) done right after parsing, as OpenBSD nc does.
// Mains call add_link_flags(), parse, then link_options(); nothing here opens sockets.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "lib/app/dltools.h"
#include "lib/base/units.h"
#include "lib/link/link.h"

namespace dl {

struct LinkFlags {
  std::string endpoint;
  bool listen = false;
  std::string proto;              // "" = native for dialers, auto for listeners
  int timeout_ms = 10000;
  int keepalive_ms = 0;
  double wait_s = -1;             // unset: 0 for dialers, forever for listeners
  double reconnect_s = 60;
  std::string max_message = "16M";
  bool drop_negative_ts = false;
  bool close_ends = false;
  std::string port_file;
  bool verbose = false, quiet = false, progress = false;
  bool lines = false, null = false, framed = false;
};

void add_link_flags(CLI::App& app, LinkFlags& f);
// Checks and converts; errors are ErrorKind::usage with the flag named.
Result<LinkOptions> link_options(const LinkFlags& f);
Result<MessageMode> message_mode(const LinkFlags& f);
Verbosity verbosity(const LinkFlags& f);

// Runs a CLI11 parse the family's way: --help/--version to stdout (exit 0), usage errors as
// one line "prog: ..." on stderr (exit 2). Returns the exit code, or nullopt to go on.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx);

}  // namespace dl
