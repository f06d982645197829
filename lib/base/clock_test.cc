#include "lib/base/clock.h"

#include <doctest/doctest.h>
#include <cmath>

using namespace dl;

TEST_CASE("deadline_after saturates instead of overflowing") {
  auto now = Clock::now();
  CHECK(deadline_after(now, HUGE_VAL) == Clock::time_point::max());
  CHECK(deadline_after(now, 1e10) == Clock::time_point::max());
  CHECK(deadline_after(now, 0) == now);
  CHECK(deadline_after(now, 1.5) - now == std::chrono::milliseconds(1500));
}
