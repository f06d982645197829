#include "lib/pymodaq/axis.h"

#include <algorithm>

namespace dl::pymodaq {

AxisSim::AxisSim(AxisConfig c) : config_(std::move(c)) {
  from_ = target_ = std::clamp(config_.position, config_.min, config_.max);
}

double AxisSim::move_to(double target, Clock::time_point now) {
  if (std::isnan(target)) target = position(now);
  double here = position(now);
  target_ = std::clamp(target, config_.min, config_.max);
  from_ = here;
  start_ = now;
  double v = std::fabs(config_.velocity);
  if (!(v > 0) || std::isinf(v)) {
    arrival_ = now;
  } else {
    arrival_ = deadline_after(now, std::fabs(target_ - from_) / v);
  }
  return target_;
}

void AxisSim::stop(Clock::time_point now) {
  double here = position(now);
  from_ = target_ = here;
  start_ = arrival_ = now;
}

double AxisSim::position(Clock::time_point now) const {
  if (now >= arrival_) return target_;
  double total = seconds_between(start_, arrival_);
  double done = seconds_between(start_, now);
  if (!(total > 0)) return target_;
  return from_ + (target_ - from_) * (done / total);
}

void AxisSim::set_limits(double min, double max, Clock::time_point now) {
  config_.min = min;
  config_.max = max;
  double here = position(now);
  from_ = target_ = std::clamp(here, min, max);
  start_ = arrival_ = now;
}

}  // namespace dl::pymodaq
