#include "lib/bridge/faults.h"

#include <doctest/doctest.h>

using namespace dl;
using namespace dl::bridge;
using namespace std::chrono_literals;

TEST_CASE("parse_fault: sides, keys and units") {
  FaultPlan p;
  REQUIRE(parse_fault("cut=64K", p).ok());
  CHECK(p.side[0].cut_bytes == 65536);
  CHECK(p.side[1].cut_bytes == 65536);
  REQUIRE(parse_fault("b:latency=20ms", p).ok());
  CHECK(p.side[0].latency_s == 0);
  CHECK(p.side[1].latency_s == doctest::Approx(0.02));
  REQUIRE(parse_fault("a:cut-every=2s", p).ok());
  CHECK(p.side[0].cut_every_s == doctest::Approx(2));
  REQUIRE(parse_fault("rate=8M", p).ok());
  CHECK(p.side[0].rate_bits == doctest::Approx(8e6));
  REQUIRE(parse_fault("jitter=5ms", p).ok());
  CHECK(p.side[1].jitter_s == doctest::Approx(0.005));
  CHECK(p.side[0].any());
}

TEST_CASE("parse_fault: refuses nonsense with the spec named") {
  FaultPlan p;
  for (const char* bad : {"cut", "cut=0", "cut=-5", "latency=inf", "speed=1", "c:cut=1", "rate=0",
                          "cut-every=0", "latency=nan"}) {
    auto st = parse_fault(bad, p);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().kind == ErrorKind::usage);
    CHECK(st.error().message().find(bad) != std::string::npos);
  }
}

TEST_CASE("TokenBucket: rate over time, bursts bounded, big messages go into debt") {
  TokenBucket b(1000, 100);  // 1000 B/s, bursts of 100
  auto t0 = Clock::now();
  CHECK(b.take(100, t0));
  CHECK_FALSE(b.take(50, t0));
  CHECK(b.ready_at(50, t0) - t0 >= 49ms);
  CHECK(b.ready_at(50, t0) - t0 <= 51ms);
  CHECK(b.take(50, t0 + 50ms));
  // A message larger than the burst passes with a full bucket, then the debt is paid.
  CHECK(b.take(1000, t0 + 1s));
  CHECK_FALSE(b.take(1, t0 + 1s + 500ms));
  CHECK(b.take(1, t0 + 2s + 10ms));
  TokenBucket off;
  CHECK(off.take(1u << 30, t0));
}

TEST_CASE("DelayLine: latency plus bounded jitter, never reordering") {
  Faults f;
  f.latency_s = 0.010;
  f.jitter_s = 0.005;
  DelayLine d(f);
  auto t0 = Clock::now();
  Clock::time_point last{};
  for (int i = 0; i < 1000; ++i) {
    auto arrival = t0 + std::chrono::microseconds(i * 10);
    auto r = d.release_at(arrival);
    CHECK(r >= arrival + 10ms);
    CHECK(r <= arrival + 15ms + 1ms);
    CHECK(r >= last);
    last = r;
  }
}
