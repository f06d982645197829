#include "lib/ping/stats.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>

namespace dl::ping {

void Moments::add(double x) {
  ++n_;
  if (n_ == 1) {
    min_ = max_ = x;
  } else {
    min_ = std::min(min_, x);
    max_ = std::max(max_, x);
  }
  double d = x - mean_;
  mean_ += d / static_cast<double>(n_);
  m2_ += d * (x - mean_);
}

double Moments::stddev() const {
  return n_ < 2 ? 0 : std::sqrt(m2_ / static_cast<double>(n_));
}

void LatencyStats::add(std::int64_t ns) {
  if (m_.count() > 0) {
    double d = std::abs(static_cast<double>(ns) - static_cast<double>(prev_));  // no int64 overflow on wild values
    jitter_ += (d - jitter_) / 16.0;
  }
  prev_ = ns;
  if (ns < 0) ++negatives_;
  m_.add(static_cast<double>(ns));
  h_.record(ns);
}

ProbeBook::ProbeBook(std::size_t capacity) {
  std::size_t c = 1;
  while (c < capacity) c <<= 1;
  ring_.resize(c);
  mask_ = c - 1;
}

void ProbeBook::sent(std::uint64_t seq, std::int64_t at_ns) {
  Slot& s = ring_[seq & mask_];
  if (s.state == State::out) {  // the ring wrapped over a probe nobody answered
    --outstanding_;
    ++timeouts_;
    s.state = State::timed_out;
    advance();
  }
  s = Slot{seq, at_ns, State::out};
  ++sent_;
  ++outstanding_;
  if (!any_sent_) oldest_ = seq;
  if (!any_sent_ || seq > highest_sent_) highest_sent_ = seq;
  any_sent_ = true;
}

ProbeBook::Reply ProbeBook::reply(std::uint64_t seq) {
  Reply r;
  Slot& s = ring_[seq & mask_];
  if (!any_sent_ || seq > highest_sent_ || s.seq != seq || s.state == State::empty) {
    ++unknown_;
    return r;
  }
  if (s.state == State::answered) {
    ++dup_;
    r.kind = Kind::duplicate;
    return r;
  }
  r.sent_ns = s.sent_ns;
  if (s.state == State::out) {
    --outstanding_;
    ++fresh_;
    r.kind = Kind::fresh;
  } else {
    ++late_;
    r.kind = Kind::late;
  }
  s.state = State::answered;
  if (any_answered_ && seq < highest_answered_) {
    r.out_of_order = true;
    ++ooo_;
  }
  if (!any_answered_ || seq > highest_answered_) highest_answered_ = seq;
  any_answered_ = true;
  if (seq == oldest_) advance();
  return r;
}

// Moves oldest_ past every probe that is no longer out: each seq is passed once, so keeping
// it current costs O(1) per probe, and next_expiry() looks at one slot.
void ProbeBook::advance() {
  while (any_sent_ && oldest_ <= highest_sent_) {
    const Slot& s = ring_[oldest_ & mask_];
    if (s.seq == oldest_ && s.state == State::out) break;
    ++oldest_;
  }
}

std::uint64_t ProbeBook::expire(std::int64_t now_ns, std::int64_t timeout_ns) {
  std::uint64_t n = 0;
  advance();
  while (outstanding_ > 0 && oldest_ <= highest_sent_) {
    Slot& s = ring_[oldest_ & mask_];
    if (s.sent_ns > now_ns - timeout_ns) break;
    s.state = State::timed_out;
    --outstanding_;
    ++timeouts_;
    ++n;
    advance();
  }
  return n;
}

std::int64_t ProbeBook::next_expiry(std::int64_t timeout_ns) const {
  if (outstanding_ == 0 || oldest_ > highest_sent_) return INT64_MAX;
  const Slot& s = ring_[oldest_ & mask_];
  return s.seq == oldest_ && s.state == State::out ? s.sent_ns + timeout_ns : INT64_MAX;
}

void RateTracker::arrival(std::int64_t at_ns) {
  if (n_ == 0) {
    first_ = at_ns;
  } else {
    std::int64_t gap = at_ns - last_;
    longest_ = std::max(longest_, gap);
    if (min_rate_ > 0 && static_cast<double>(gap) > 1e9 / min_rate_) ++below_;
  }
  last_ = at_ns;
  ++n_;
}

double RateTracker::achieved_rate() const {
  if (n_ < 2 || last_ <= first_) return 0;
  return static_cast<double>(n_ - 1) * 1e9 / static_cast<double>(last_ - first_);
}

}  // namespace dl::ping
