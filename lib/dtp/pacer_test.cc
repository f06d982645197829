// Unit tests for the token bucket and the loss-driven rate controller.
#include <doctest/doctest.h>

#include <algorithm>

#include "lib/dtp/pacer.h"

using namespace dl::dtp;

TEST_CASE("token bucket: starts full, refills at the rate, caps at the burst") {
  TokenBucket b;
  b.configure(1e6, 10000);  // 1 MB/s, 10 kB burst
  CHECK(b.refill(0) == doctest::Approx(10000));
  b.spend(10000);
  CHECK(b.refill(1000000) == doctest::Approx(1000));  // 1 ms later: 1000 bytes
  CHECK(b.wait_ns(2000) == 1000000);                  // 1000 more bytes: 1 ms
  CHECK(b.refill(1000000000) == doctest::Approx(10000));  // a long sleep still gives one burst
  b.spend(25000);  // may go negative (a slot larger than the tokens)
  CHECK(b.wait_ns(0) == 15000000);
  CHECK(b.refill(500) < 0);  // time going backwards changes nothing
}

TEST_CASE("a late wake-up sends the same average rate (millisecond or nanosecond timers)") {
  for (std::int64_t tick : {std::int64_t{200000}, std::int64_t{1000000}, std::int64_t{3000000}}) {
    TokenBucket b;
    const double rate = 125e6, unit = 64000;
    b.configure(rate, std::max(2 * unit, rate * 4e-3));
    double sent = 0;
    b.refill(0);
    b.spend(b.refill(0));
    for (std::int64_t t = tick; t <= 1000000000; t += tick) {
      double tok = b.refill(t);
      while (tok >= unit) {
        b.spend(unit);
        tok -= unit;
        sent += unit;
      }
    }
    CHECK(sent == doctest::Approx(rate).epsilon(0.01));
  }
}

TEST_CASE("rate controller: grows without loss, backs off on congestion, learns steady loss") {
  RateController c(1e6, 1e4, 1e9, true);
  for (int i = 0; i < 20; ++i) c.on_interval(1000, 1000);
  CHECK(c.rate() > 5e6);
  double before = c.rate();
  c.on_interval(1000, 700);  // 30% loss out of nowhere: congestion
  CHECK(c.rate() < before * 0.8);
  // A link that always loses 10% whatever the rate: after a while the rate grows again.
  RateController r(1e6, 1e4, 1e9, true);
  for (int i = 0; i < 200; ++i) r.on_interval(1000, 900);
  CHECK(r.baseline() == doctest::Approx(0.1).epsilon(0.02));
  CHECK(r.rate() > 1e8);  // grew by orders of magnitude despite the 10% loss
  CHECK(r.rate() <= 1e9);
}

TEST_CASE("rate controller: fixed rate ignores loss; caps bound it") {
  RateController f(1e6, 1e4, 5e7, false);
  CHECK(f.rate() == 5e7);
  f.on_interval(1000, 10);
  CHECK(f.rate() == 5e7);
  CHECK(f.loss() == doctest::Approx(0.99));
  RateController a(1e6, 1e4, 1e9, true);
  a.set_max(2e5);
  CHECK(a.rate() == 2e5);
  for (int i = 0; i < 50; ++i) a.on_interval(1000, 0);
  CHECK(a.rate() >= 1e4);
  a.on_interval(0, 0);  // an empty interval says nothing
  a.set_max(2500);       // a cap below the adaptation floor (1e4) still wins
  CHECK(a.rate() == 2500);
  for (int i = 0; i < 5; ++i) a.on_interval(1000, 1000);
  CHECK(a.rate() == 2500);
}

TEST_CASE("rate controller: a queue at the receiver holds, then lowers the rate; delivery bounds it") {
  RateController c(1e6, 1e4, 1e9, true);
  c.on_interval(1000, 1000, 0.0);
  double r = c.rate();
  c.on_interval(1000, 1000, 0.030);  // a queue forms: hold
  CHECK(c.rate() == r);
  c.on_interval(1000, 1000, 0.080);  // it keeps growing: back off
  CHECK(c.rate() < r);
  double low = c.rate();
  for (int i = 0; i < 3; ++i) c.on_interval(1000, 700, 0.2);  // cool-down: judged again later
  CHECK(c.rate() == low);
  RateController d(1e6, 1e4, 1e9, true);
  for (int i = 0; i < 30; ++i) d.on_interval(1000, 1000, 0, 2e6);  // only 2 MB/s get through
  CHECK(d.rate() <= 4e6);
}
