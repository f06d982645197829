// dtp: the DTP tools as library functions. run_dtpserve() serves files over UDP to any number
// of dtpget clients at once, each session paced on its own; run_dtpget() fetches one payload,
// re-requesting holes pass after pass until it is complete, hash-checked and written, or until
// its deadline, leaving a session file to resume from. Both block until done, print only
// through ctx.say/ctx.progress and return the family's exit code (lib/base/error.h).
// Wire format: lib/codec/dtp_packet.h (man/dtp.7); session file: session.h (man/dtp-session.5).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/app/context.h"
#include "lib/codec/range_set.h"

namespace dl {

struct FaultOptions {
  double drop = 0;       // probability of dropping each DATA datagram (sender or receiver side)
  bool reorder = false;  // shuffle the datagrams of each batch
};

struct DtpserveOptions {
  std::string listen = "0";         // [HOST:]PORT
  std::string root;                 // serve names beneath this directory
  std::vector<std::string> files;   // and/or these files, by their base name
  double rate_bits = 0;             // total cap in bit/s across sessions; 0: none
  bool fixed_rate = false;          // no loss-driven adaptation
  std::size_t max_sessions = 64;
  double idle_timeout_s = 10;       // a session nobody hears from for this long ends
  std::size_t buffer_bytes = 32u << 20;
  std::string port_file;
  FaultOptions faults;
  Verbosity verbosity;
};

struct DtpgetOptions {
  std::string server;               // HOST:PORT (empty with --resume: taken from the session)
  std::string name;                 // payload name (likewise)
  std::string output;               // file; "-" = stdout; empty: the name's base name
  std::string session;              // session file; empty: <output>.dtp-session
  std::string resume;               // --resume FILE
  std::string info;                 // --info FILE: print what is missing and exit
  bool restart = false;
  std::vector<ByteRange> ranges;    // --range; empty: everything
  double rate_bits = 0;             // ask the server for at most this; 0: no cap
  std::size_t mtu = 1500;           // IP MTU of the path: datagrams fit in it unfragmented
  double deadline_s = -1;           // <0: none
  double timeout_s = 10;            // give up when the server is silent this long
  double save_interval_s = 1;
  std::size_t buffer_bytes = 32u << 20;
  FaultOptions faults;
  Verbosity verbosity;
};

int run_dtpserve(const DtpserveOptions& o, ToolContext& ctx);
int run_dtpget(const DtpgetOptions& o, ToolContext& ctx);

// Parses --range text: "START-END" (END exclusive), "START+LENGTH", "START-" (to the end),
// comma-separated, with size units (4G+1M). Errors: usage.
Result<std::vector<ByteRange>> parse_ranges(std::string_view text);
// Parses a probability: "0.1", "10%". Errors: usage naming `flag`.
Result<double> parse_fraction(std::string_view text, std::string_view flag);

}  // namespace dl
