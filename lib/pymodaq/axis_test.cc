#include "lib/pymodaq/axis.h"

#include <doctest/doctest.h>

using namespace dl;
using namespace dl::pymodaq;
using namespace std::chrono_literals;

TEST_CASE("moves at constant speed, clamps to the limits, homes and stops") {
  Clock::time_point t0{};
  AxisSim a({0, 2, -1, 5, 0.5, "mm"});
  CHECK(a.move_to(4, t0) == 4);
  CHECK(a.moving(t0 + 1s));
  CHECK(a.position(t0 + 1s) == doctest::Approx(2));
  CHECK(a.arrival() == t0 + 2s);
  CHECK_FALSE(a.moving(t0 + 2s));
  CHECK(a.position(t0 + 3s) == 4);
  CHECK(a.move_to(10, t0 + 3s) == 5);        // clamped
  CHECK(a.position(t0 + 3500ms) == doctest::Approx(5));
  CHECK(a.move_by(-1, t0 + 4s) == 4);
  CHECK(a.go_home(t0 + 5s) == 0.5);
  CHECK(a.position(t0 + 6s) == doctest::Approx(2.0));  // 1 s at 2 mm/s from 4 towards 0.5
  a.stop(t0 + 6s);
  CHECK_FALSE(a.moving(t0 + 6s));
  CHECK(a.position(t0 + 9s) == doctest::Approx(2.0));
  CHECK(a.move_to(-3, t0 + 10s) == -1);
}

TEST_CASE("velocity 0 or inf: arrives at once; limits applied later clamp the position") {
  Clock::time_point t0{};
  AxisSim a({0, 0, -INFINITY, INFINITY, 0, "um"});
  a.move_to(7, t0);
  CHECK_FALSE(a.moving(t0));
  CHECK(a.position(t0) == 7);
  a.set_limits(-1, 3, t0);
  CHECK(a.position(t0) == 3);
}
