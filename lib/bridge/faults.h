// faults: what dlbridge's --fault options do to a hop, as pure schedules the bridge consults:
// cut the connection every N bytes or every T seconds, hold each message (or chunk) back by a
// latency plus random jitter, and cap the rate with a token bucket. Toxiproxy is the model;
// our own tests use these to prove the family's no-loss guarantees.
//
// Not I/O: nothing here touches a socket or a clock of its own; callers pass `now`.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/clock.h"
#include "lib/base/error.h"

namespace dl::bridge {

// One hop's faults. Zero means "off" for each field.
struct Faults {
  std::uint64_t cut_bytes = 0;  // cut each connection after this many bytes through it
  double cut_every_s = 0;       // cut each connection this long after it was made
  double latency_s = 0;         // hold every message (chunk) this long before passing it on
  double jitter_s = 0;          // ... plus a uniform random extra in [0, jitter)
  double rate_bits = 0;         // cap on what is passed on, bits per second
  bool any() const { return cut_bytes || cut_every_s > 0 || latency_s > 0 || jitter_s > 0 || rate_bits > 0; }
};

// Which hop a --fault applies to: side a, side b, or both.
struct FaultPlan {
  Faults side[2];
};

// Parses one --fault SPEC into `plan`: [a:|b:]KEY=VALUE with KEY one of cut (bytes, e.g. 64M),
// cut-every (duration, e.g. 2s), latency, jitter (durations, e.g. 20ms), rate (e.g. 100M bits/s).
// Without a side prefix the fault applies to both hops. Errors: usage, naming the spec.
Status parse_fault(std::string_view spec, FaultPlan& plan);

// A token bucket: `rate` bytes per second, bursts up to `burst` bytes. take() says whether `n`
// bytes may pass now; when not, ready_at() is when they may.
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double bytes_per_s, double burst_bytes);
  bool enabled() const { return rate_ > 0; }
  bool take(std::size_t n, Clock::time_point now);
  Clock::time_point ready_at(std::size_t n, Clock::time_point now) const;

 private:
  void refill(Clock::time_point now);
  double rate_ = 0, burst_ = 0, tokens_ = 0;
  Clock::time_point last_{};
};

// The delay each message gets: latency plus uniform jitter, from a seeded generator (jitter need
// not be unpredictable, only spread).
class DelayLine {
 public:
  explicit DelayLine(const Faults& f, std::uint64_t seed = 1) : latency_(f.latency_s), jitter_(f.jitter_s), rng_(seed) {}
  bool enabled() const { return latency_ > 0 || jitter_ > 0; }
  // When a message that arrived at `arrival` may leave. Never earlier than the one before it:
  // a delay line does not reorder.
  Clock::time_point release_at(Clock::time_point arrival);

 private:
  double latency_, jitter_;
  std::mt19937_64 rng_;
  Clock::time_point last_{};
};

}  // namespace dl::bridge
