// link_flags: the command-line flags every link tool shares, defined once with CLI11, and
// their checks (conflicts, ranges) done right after parsing, as OpenBSD nc does.
// Mains call add_link_flags(), parse, then link_options(); nothing here opens sockets.
// Durations (--timeout, --keepalive, --wait, --reconnect) are read with parse_duration: a bare
// number is seconds, "500ms"/"2m" carry a unit, "inf"/"forever" mean no limit; negative, NaN
// and garbage are usage errors naming the flag.
#pragma once

#include <CLI/CLI.hpp>

#include "lib/app/cli.h"
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/app/dltools.h"
#include "lib/base/units.h"
#include "lib/link/link.h"

namespace dl {

struct LinkFlags {
  std::string endpoint;
  bool listen = false;
  std::string proto;              // "" = native for dialers, auto for listeners
  std::string timeout = "10s";    // 0 or inf: none
  std::string keepalive = "auto"; // auto: a third of the shorter timeout; inf: never
  std::string wait;               // not given: 0 for dialers, inf for listeners
  bool wait_given = false;
  std::string reconnect = "60s";  // inf: forever
  std::string max_message = "16M";
  bool drop_negative_ts = false;
  std::vector<std::string> allow;  // --allow ADDR[/LEN], listeners only
  bool close_ends = false;
  std::string port_file;
  bool verbose = false, quiet = false, progress = false;
  bool lines = false, null = false, framed = false;
  TlsFlags tls;                   // --psk, --gen-psk, --cert, --key, --ca, --pin (dl-security(7))
};

void add_link_flags(CLI::App& app, LinkFlags& f);
// The parts of add_link_flags for tools with other endpoints or modes (dlbridge): timeouts,
// keepalive, wait, reconnect, limits, keys; and -v/-q/--progress with the exit-status footer.
void add_session_flags(CLI::App& app, LinkFlags& f);
void add_output_flags(CLI::App& app, LinkFlags& f, bool with_progress = true);
// Checks and converts; errors are ErrorKind::usage with the flag named.
Result<LinkOptions> link_options(const LinkFlags& f);
Result<MessageMode> message_mode(const LinkFlags& f);
Verbosity verbosity(const LinkFlags& f);

// A message count (--count): a whole number of at least 1. "-1", "0", "1.5", "many" and
// anything past 2^64 are usage errors naming `flag`.
Result<std::uint64_t> parse_count(std::string_view text, std::string_view flag);

// The family's exit table as --help prints it (the same codes as error.h, README and the


}  // namespace dl
