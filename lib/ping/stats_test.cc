#include "lib/ping/stats.h"

#include <doctest/doctest.h>

#include <cmath>

using namespace dl::ping;

TEST_CASE("moments: mean, population stddev, min, max") {
  Moments m;
  for (double x : {2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0}) m.add(x);
  CHECK(m.count() == 8);
  CHECK(m.mean() == doctest::Approx(5.0));
  CHECK(m.stddev() == doctest::Approx(2.0));
  CHECK(m.min() == 2.0);
  CHECK(m.max() == 9.0);
  Moments one;
  one.add(3);
  CHECK(one.stddev() == 0);
}

TEST_CASE("RFC 3550 jitter converges to the constant step of an alternating series") {
  LatencyStats s;
  for (int i = 0; i < 1000; ++i) s.add(i % 2 ? 1100 : 1000);
  CHECK(s.jitter_rfc3550() == doctest::Approx(100.0).epsilon(0.001));
  LatencyStats flat;
  for (int i = 0; i < 10; ++i) flat.add(500);
  CHECK(flat.jitter_rfc3550() == 0);
  LatencyStats neg;
  neg.add(-3);
  neg.add(5);
  CHECK(neg.negatives() == 1);
}

TEST_CASE("probe book: fresh, duplicate, out of order, unknown") {
  ProbeBook b(8);
  for (std::uint64_t s = 1; s <= 4; ++s) b.sent(s, static_cast<std::int64_t>(s) * 100);
  CHECK(b.outstanding() == 4);
  auto r = b.reply(2);
  CHECK(r.kind == ProbeBook::Kind::fresh);
  CHECK(r.sent_ns == 200);
  CHECK(!r.out_of_order);
  CHECK(b.reply(2).kind == ProbeBook::Kind::duplicate);
  r = b.reply(1);
  CHECK(r.kind == ProbeBook::Kind::fresh);
  CHECK(r.out_of_order);
  CHECK(b.reply(99).kind == ProbeBook::Kind::unknown);
  CHECK(b.received() == 2);
  CHECK(b.duplicates() == 1);
  CHECK(b.out_of_order() == 1);
  CHECK(b.unknown() == 1);
  CHECK(b.lost() == 2);
}

TEST_CASE("probe book: timeouts, late replies, ring wrap") {
  ProbeBook b(4);
  b.sent(1, 0);
  b.sent(2, 10);
  b.sent(3, 20);
  CHECK(b.next_expiry(100) == 100);
  CHECK(b.expire(105, 100) == 1);  // only seq 1 is older than 100
  CHECK(b.next_expiry(100) == 110);
  CHECK(b.timeouts() == 1);
  auto r = b.reply(1);
  CHECK(r.kind == ProbeBook::Kind::late);
  CHECK(b.late() == 1);
  CHECK(b.reply(2).kind == ProbeBook::Kind::fresh);
  CHECK(b.expire(1000, 100) == 1);  // seq 3
  CHECK(b.outstanding() == 0);
  CHECK(b.next_expiry(100) == INT64_MAX);
  // Wrap: 4 slots; seq 8 takes seq 4's slot, seq 12 takes seq 8's, both while out.
  for (std::uint64_t s = 4; s <= 8; ++s) b.sent(s, 2000);
  b.sent(12, 2000);
  CHECK(b.timeouts() == 4);  // seq 4 and seq 8 were overwritten while out
  CHECK(b.reply(8).kind == ProbeBook::Kind::unknown);
  CHECK(b.lost() == b.sent_count() - b.received());
}

TEST_CASE("rate tracker: achieved rate, longest gap, gaps below --min-rate") {
  RateTracker r(30);  // 30 Hz: a gap longer than 33.3 ms is too slow
  std::int64_t t = 0;
  for (int i = 0; i < 10; ++i) {
    r.arrival(t);
    t += (i == 5) ? 50'000'000 : 10'000'000;
  }
  CHECK(r.arrivals() == 10);
  CHECK(r.intervals() == 9);
  CHECK(r.longest_gap_ns() == 50'000'000);
  CHECK(r.below_min_rate() == 1);
  CHECK(r.achieved_rate() == doctest::Approx(9.0 / 0.13));
  RateTracker none;
  CHECK(none.achieved_rate() == 0);
}
