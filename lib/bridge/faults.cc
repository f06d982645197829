#include "lib/bridge/faults.h"

#include <algorithm>
#include <cmath>

#include "lib/base/units.h"

namespace dl::bridge {

Status parse_fault(std::string_view spec, FaultPlan& plan) {
  std::string flag = "--fault " + std::string(spec);
  int first = 0, last = 1;
  std::string_view s = spec;
  if (s.starts_with("a:")) {
    last = 0;
    s.remove_prefix(2);
  } else if (s.starts_with("b:")) {
    first = 1;
    s.remove_prefix(2);
  }
  auto eq = s.find('=');
  if (eq == std::string_view::npos) {
    return make_error(ErrorKind::usage, flag, "expected [a:|b:]KEY=VALUE, e.g. cut=64M, cut-every=2s, latency=20ms, jitter=5ms, rate=100M");
  }
  std::string_view key = s.substr(0, eq), value = s.substr(eq + 1);
  for (int i = first; i <= last; ++i) {
    Faults& f = plan.side[i];
    if (key == "cut") {
      auto v = parse_size(value, flag);
      if (!v) return v.error();
      if (*v == 0) return make_error(ErrorKind::usage, flag, "cut needs at least one byte");
      f.cut_bytes = *v;
    } else if (key == "cut-every" || key == "latency" || key == "jitter") {
      auto v = parse_duration(value, flag);
      if (!v) return v.error();
      if (!std::isfinite(*v)) return make_error(ErrorKind::usage, flag, "needs a finite duration");
      (key == "cut-every" ? f.cut_every_s : key == "latency" ? f.latency_s : f.jitter_s) = *v;
      if (key == "cut-every" && *v <= 0) return make_error(ErrorKind::usage, flag, "cut-every needs a positive duration");
    } else if (key == "rate") {
      auto v = parse_rate_bits(value, flag);
      if (!v) return v.error();
      f.rate_bits = *v;
    } else {
      return make_error(ErrorKind::usage, flag, "unknown fault '" + std::string(key) + "' (cut, cut-every, latency, jitter, rate)");
    }
  }
  return ok_status();
}

TokenBucket::TokenBucket(double bytes_per_s, double burst_bytes)
    : rate_(bytes_per_s), burst_(burst_bytes), tokens_(burst_bytes) {}

void TokenBucket::refill(Clock::time_point now) {
  if (last_ == Clock::time_point{}) last_ = now;
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * seconds_between(last_, now));
    last_ = now;
  }
}

bool TokenBucket::take(std::size_t n, Clock::time_point now) {
  if (!enabled()) return true;
  refill(now);
  // A message larger than the burst passes once the bucket is full, going into debt: a cap
  // must slow big messages down, not block them for ever.
  double need = std::min(static_cast<double>(n), burst_);
  if (tokens_ < need) return false;
  tokens_ -= static_cast<double>(n);
  return true;
}

Clock::time_point TokenBucket::ready_at(std::size_t n, Clock::time_point now) const {
  if (!enabled()) return now;
  double need = std::min(static_cast<double>(n), burst_);
  double tokens = tokens_;
  if (last_ != Clock::time_point{} && now > last_) tokens = std::min(burst_, tokens + rate_ * seconds_between(last_, now));
  if (tokens >= need) return now;
  return deadline_after(now, (need - tokens) / rate_);
}

Clock::time_point DelayLine::release_at(Clock::time_point arrival) {
  double d = latency_;
  if (jitter_ > 0) d += std::uniform_real_distribution<double>(0, jitter_)(rng_);
  Clock::time_point t = std::max(deadline_after(arrival, d), last_);
  last_ = t;
  return t;
}

}  // namespace dl::bridge
