// dltools: the dlsend and dlrecv programs as library functions. A tool's main() only maps
// flags onto these option structs (see link_flags.h) and returns run_*()'s exit code.
// Both block until done; they print through ctx, never exit, and return the family's
// exit code (error.h).
#pragma once

#include <optional>
#include <string>

#include "lib/link/link.h"
#include "lib/codec/message_io.h"
#include "lib/app/tool.h"

namespace dl {

struct DlsendOptions {
  LinkOptions link;
  std::string file;                       // empty: stdin
  MessageMode mode = MessageMode::raw;
  std::size_t chunk = 1u << 20;           // raw mode: largest message
  bool fixed = false;                     // raw mode: every message exactly chunk bytes but the last
  std::string port_file;
  Verbosity verbosity;
};

struct DlrecvOptions {
  LinkOptions link;
  std::string output;                     // empty: stdout
  MessageMode mode = MessageMode::raw;
  std::uint64_t count = 0;                // 0: no limit (the flag itself refuses 0)
  std::optional<std::string> timestamps;  // "" = stderr, else a file
  std::string port_file;
  Verbosity verbosity;
};

int run_dlsend(const DlsendOptions& options, ToolContext& ctx);
int run_dlrecv(const DlrecvOptions& options, ToolContext& ctx);

}  // namespace dl
