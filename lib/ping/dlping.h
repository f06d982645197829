// dlping: honest latency measurement between two ends, as a library function its main() calls.
//   client     dlping HOST:PORT      sends probes, reports RTT with the responder's turnaround
//                                    removed, loss, jitter, rate stability (report.h)
//   responder  dlping -l [HOST:]PORT answers probes and reports its own side per session
// Over the native frame format (frame.h + ping_payload.h: the three-way PING/PONG/ACK3) or the
// fastSocket JSON-lines scheme (fastsocket.h), over TCP, unix and udp: sockets. A lean
// connection of its own, not the self-healing Link: a latency probe must not be retried,
// buffered or reordered behind anyone's back. Users' description: man/dlping.1.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/app/context.h"
#include "lib/net/tls.h"

namespace dl::ping {

enum class Proto { native, fastsocket };

struct DlpingOptions {
  std::string endpoint;           // dial or listen text; "udp:" prefix for datagrams
  bool listen = false;
  Proto proto = Proto::native;

  // Client.
  std::uint64_t count = 0;        // probes per size; 0: until -w or a signal
  double interval_s = 1.0;        // -i / --rate
  bool flood = false;             // back to back: next probe as soon as the window allows
  std::uint32_t window = 1;       // --flood: probes in flight at once
  double deadline_s = INFINITY;   // -w: stop sending after this long
  std::vector<std::uint32_t> sizes{64};  // -s, or the --sweep list
  std::uint64_t warmup = 0;       // probes per size exchanged but not counted
  double timeout_s = 2.0;         // a probe unanswered this long counts as timed out
  double connect_timeout_s = 10;
  double min_rate = 0;            // count reply gaps longer than 1/min_rate
  std::uint64_t every = 1;        // a probe line for every Nth reply; 0: none
  bool json = false;              // the summary as JSON on stdout
  bool histogram = false;         // terminal histogram in the summary
  std::string csv_path, plot_path;

  // Both.
  int cpu = -1;                   // pin to this CPU
  bool busy_poll = false;         // spin instead of sleeping in poll(2)
  std::string port_file;          // responder
  TlsFlags tls;                   // keys (dl-security(7)): TCP and unix only
  double reply_delay_s = 0;       // responder: hold each probe this long before stamping it
  double turnaround_s = 0;        // responder: hold each reply this long between the stamps
  Verbosity verbosity;
};

// Runs until done (client: -c/-w reached, or SIGINT/SIGTERM; responder: SIGINT/SIGTERM or -w)
// and returns the exit code: client 0 when at least one reply came back, 7 when none did,
// the family's code for a connect/resolve/protocol error; responder 0 at -w, 130 on a signal.
// Blocks; prints per-probe lines and the summary on ctx.stdout_fd, errors through ctx.say.
int run_dlping(const DlpingOptions& options, ToolContext& ctx);

// Parses a --sweep list: "64,256,1K" or "64:64K" (doubling from the first to the last).
// Errors: usage.
Result<std::vector<std::uint32_t>> parse_sweep(const std::string& text, std::uint32_t max_size);

}  // namespace dl::ping
