// clock: the family's monotonic clock and deadline arithmetic that never overflows. Timers,
// timeouts and latency figures use Clock (steady, nanoseconds); wall time only stamps
// messages (unix_now). A duration of +inf seconds means "never".
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>

namespace dl {

using Clock = std::chrono::steady_clock;

// Nanoseconds on the monotonic clock (CLOCK_MONOTONIC), for latency arithmetic.
inline std::int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Wall-clock seconds since the Unix epoch: the family's default message timestamp.
double unix_now();

// now + seconds, saturating: +inf (or anything past a century) is Clock::time_point::max().
inline Clock::time_point deadline_after(Clock::time_point now, double seconds) {
  if (!(seconds < 3.2e9)) return Clock::time_point::max();
  if (seconds <= 0) return now;
  return now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace dl
