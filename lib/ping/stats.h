// stats: the pure bookkeeping behind dlping's figures, fed with times the caller measured.
//   Moments      count, mean, standard deviation (Welford), min, max of a series
//   LatencyStats Moments + Histogram (percentiles) + RFC 3550 interarrival jitter of RTTs
//   ProbeBook    which probes are out, answered, duplicated, out of order, timed out or late
//   RateTracker  the arrivals' achieved rate, the longest gap, gaps slower than --min-rate
// No clocks, no I/O: every time is an int64 nanosecond value handed in, so tests drive them
// with made-up times. What this is not: the printing (report.h) or the measuring (dlping.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "lib/ping/histogram.h"

namespace dl::ping {

class Moments {
 public:
  void add(double x);
  std::uint64_t count() const { return n_; }
  double mean() const { return n_ ? mean_ : 0; }
  double stddev() const;  // population standard deviation; 0 for fewer than 2 values
  double min() const { return n_ ? min_ : 0; }
  double max() const { return n_ ? max_ : 0; }

 private:
  std::uint64_t n_ = 0;
  double mean_ = 0, m2_ = 0, min_ = 0, max_ = 0;
};

// One series of latencies (ns): moments, histogram, and the RFC 3550 (section 6.4.1)
// interarrival jitter J += (|D| - J) / 16 with D the difference of consecutive values.
class LatencyStats {
 public:
  void add(std::int64_t ns);
  const Moments& moments() const { return m_; }
  const Histogram& histogram() const { return h_; }
  double jitter_rfc3550() const { return jitter_; }
  std::uint64_t count() const { return m_.count(); }
  std::uint64_t negatives() const { return negatives_; }  // values < 0 (a broken formula's)

 private:
  Moments m_;
  Histogram h_;
  double jitter_ = 0;
  std::int64_t prev_ = 0;
  std::uint64_t negatives_ = 0;
};

// Tracks probes by sequence number in a ring of `capacity` slots (a power of two). A probe
// still outstanding when its slot is needed again counts as timed out. Never allocates after
// construction.
class ProbeBook {
 public:
  explicit ProbeBook(std::size_t capacity = 1 << 16);

  void sent(std::uint64_t seq, std::int64_t at_ns);

  enum class Kind { fresh, late, duplicate, unknown };
  struct Reply {
    Kind kind = Kind::unknown;
    std::int64_t sent_ns = 0;   // fresh and late
    bool out_of_order = false;  // an earlier probe than one already answered
  };
  Reply reply(std::uint64_t seq);

  // Marks probes sent at or before now - timeout as timed out; returns how many it marked.
  std::uint64_t expire(std::int64_t now_ns, std::int64_t timeout_ns);
  // When the oldest outstanding probe times out (INT64_MAX when none is out).
  std::int64_t next_expiry(std::int64_t timeout_ns) const;

  std::uint64_t outstanding() const { return outstanding_; }
  std::uint64_t sent_count() const { return sent_; }
  std::uint64_t received() const { return fresh_ + late_; }
  std::uint64_t late() const { return late_; }
  std::uint64_t duplicates() const { return dup_; }
  std::uint64_t out_of_order() const { return ooo_; }
  std::uint64_t timeouts() const { return timeouts_; }
  std::uint64_t unknown() const { return unknown_; }
  std::uint64_t lost() const { return sent_ - received(); }  // never answered (so far)

 private:
  void advance();
  enum class State : std::uint8_t { empty, out, answered, timed_out };
  struct Slot {
    std::uint64_t seq = 0;
    std::int64_t sent_ns = 0;
    State state = State::empty;
  };
  std::vector<Slot> ring_;
  std::uint64_t mask_;
  std::uint64_t oldest_ = 0;   // the oldest probe still out (or highest sent + 1)
  std::uint64_t highest_sent_ = 0, highest_answered_ = 0;
  bool any_sent_ = false, any_answered_ = false;
  std::uint64_t sent_ = 0, fresh_ = 0, late_ = 0, dup_ = 0, ooo_ = 0, timeouts_ = 0,
                unknown_ = 0, outstanding_ = 0;
};

// Arrival times of replies (or messages): how steady the flow is.
class RateTracker {
 public:
  explicit RateTracker(double min_rate = 0) : min_rate_(min_rate) {}
  void arrival(std::int64_t at_ns);
  std::uint64_t arrivals() const { return n_; }
  double achieved_rate() const;           // (arrivals - 1) / (last - first), per second
  std::int64_t longest_gap_ns() const { return longest_; }
  std::uint64_t intervals() const { return n_ ? n_ - 1 : 0; }
  std::uint64_t below_min_rate() const { return below_; }  // gaps longer than 1/min_rate
  double min_rate() const { return min_rate_; }

 private:
  double min_rate_;
  std::uint64_t n_ = 0, below_ = 0;
  std::int64_t first_ = 0, last_ = 0, longest_ = 0;
};

}  // namespace dl::ping
