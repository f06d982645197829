// report: how dlping prints what it measured: the ping-like line per probe, the summary, the
// terminal histogram and the --json document. Pure: figures in, text out; the caller decides
// where the text goes. What this is not: the measuring (client.cc, responder.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/ping/stats.h"

namespace dl::ping {

// One measured phase: every probe of one size (dlping runs one phase per --sweep size).
struct PhaseFigures {
  std::uint32_t size = 0;          // probe payload bytes (fastSocket: the payload string's length)
  std::uint32_t wire_bytes = 0;    // bytes of one probe on the wire
  LatencyStats rtt;                // turnaround removed (fastSocket client: raw, nothing to remove)
  LatencyStats raw;                // client send to reply arrival
  LatencyStats turnaround;         // the responder's, from its stamps
  LatencyStats fastsocket;         // what fastSocket's formula T1 - T2/2 would print
  bool has_turnaround = true;      // false against a peer that stamps nothing (fastSocket server)
  bool has_fastsocket = false;
  std::uint64_t sent = 0, received = 0, lost = 0, duplicated = 0, out_of_order = 0,
                timeouts = 0, late = 0, unknown = 0;
  RateTracker rate;
  double duration_s = 0;           // first probe sent to the phase's end
};

struct RunFigures {
  std::string program = "dlping";
  std::string target;      // "127.0.0.1:9000"
  std::string proto;       // "native" | "fastsocket"
  std::string transport;   // "tcp" | "unix" | "udp"
  double setup_s = -1;     // connection set-up; < 0: none (udp)
  std::vector<PhaseFigures> phases;
};

// "96 bytes from 127.0.0.1:9000: seq=3 rtt=23.4 us (raw 25.1 us, turnaround 1.7 us)"
std::string probe_line(const std::string& target, std::uint32_t wire_bytes, std::uint64_t seq,
                       std::int64_t rtt_ns, std::int64_t raw_ns, std::int64_t turnaround_ns,
                       bool has_turnaround, bool late);

// Nanoseconds in the summary's unit: "12.3 us", "1.25 ms", "850 ns".
std::string fmt_ns(double ns);

// The summary block, ping style, several lines ending in "\n". `histogram` adds the terminal
// histogram of the RTTs.
std::string text_summary(const RunFigures& run, bool histogram);

// A bar chart of a histogram in up to `rows` rows, `width` columns of bars.
std::string terminal_histogram(const Histogram& h, int rows = 16, int width = 50);

// The --json document (one object, "\n" at the end), histogram buckets included.
std::string json_summary(const RunFigures& run);

// One figure block as JSON (count, min, mean, stddev, max, p50..p99.99, jitters), in ns.
std::string json_latency(const LatencyStats& s);

}  // namespace dl::ping
