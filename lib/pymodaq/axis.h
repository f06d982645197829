// axis: a simulated motorised axis for the actuator role: position, velocity, limits, home.
// Moves run at constant speed from where the axis is to the (clamped) target; time is the
// caller's (Clock::time_point arguments), so it is pure and tested without sleeping.
// It is not: the protocol (which messages a move produces is the actuator role's business).
#pragma once

#include <cmath>
#include <string>

#include "lib/base/clock.h"

namespace dl::pymodaq {

struct AxisConfig {
  double position = 0;   // where the axis starts
  double velocity = 1;   // units per second; 0 or inf: moves arrive at once
  double min = -INFINITY, max = INFINITY;
  double home = 0;
  std::string units = "mm";
};

class AxisSim {
 public:
  explicit AxisSim(AxisConfig c);
  // Starts a move to `target`, clamped to the limits; returns the clamped target.
  double move_to(double target, Clock::time_point now);
  double move_by(double step, Clock::time_point now) { return move_to(position(now) + step, now); }
  double go_home(Clock::time_point now) { return move_to(config_.home, now); }
  // Stops where the axis is now.
  void stop(Clock::time_point now);
  double position(Clock::time_point now) const;
  bool moving(Clock::time_point now) const { return now < arrival_; }
  Clock::time_point arrival() const { return arrival_; }
  double target() const { return target_; }
  AxisConfig& config() { return config_; }
  const AxisConfig& config() const { return config_; }
  // Applies new limits to a resting axis (clamps its position).
  void set_limits(double min, double max, Clock::time_point now);

 private:
  AxisConfig config_;
  double from_ = 0, target_ = 0;
  Clock::time_point start_{}, arrival_{};
};

}  // namespace dl::pymodaq
