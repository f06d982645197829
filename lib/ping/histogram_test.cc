#include "lib/ping/histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using dl::ping::Histogram;

TEST_CASE("bucket layout is contiguous and every value lands in its own bucket") {
  int n = Histogram::bucket_count();
  CHECK(Histogram::bucket_low(0) == 0);
  for (int i = 1; i < n; ++i) REQUIRE(Histogram::bucket_low(i) == Histogram::bucket_high(i - 1));
  for (std::int64_t v : {0LL, 1LL, 255LL, 256LL, 257LL, 511LL, 512LL, 1000LL, 123456789LL, (1LL << 39) + 5}) {
    int i = Histogram::index_of(v);
    CHECK(Histogram::bucket_low(i) <= v);
    CHECK(v < Histogram::bucket_high(i));
  }
  // Every bucket is at most 1/kSub of its lower bound wide: the stated error bound.
  for (int i = 2 * Histogram::kSub; i < n; ++i) {
    double w = static_cast<double>(Histogram::bucket_high(i) - Histogram::bucket_low(i));
    REQUIRE(w / static_cast<double>(Histogram::bucket_low(i)) <= 1.0 / Histogram::kSub + 1e-12);
  }
}

TEST_CASE("percentiles of small exact values are exact") {
  Histogram h;
  for (int v = 1; v <= 100; ++v) h.record(v);
  CHECK(h.count() == 100);
  CHECK(h.min() == 1);
  CHECK(h.max() == 100);
  CHECK(h.percentile(50) == 50);
  CHECK(h.percentile(99) == 99);
  CHECK(h.percentile(100) == 100);
  CHECK(h.percentile(0) == 1);
}

TEST_CASE("percentiles stay within the stated relative error over a wide spread") {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> d(std::log(20000.0), 1.5);
  std::vector<std::int64_t> v;
  Histogram h;
  for (int i = 0; i < 100000; ++i) {
    auto x = static_cast<std::int64_t>(d(rng));
    v.push_back(x);
    h.record(x);
  }
  std::sort(v.begin(), v.end());
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    auto rank = static_cast<std::size_t>(std::ceil(p / 100 * v.size()));
    double exact = static_cast<double>(v[rank - 1]);
    double got = static_cast<double>(h.percentile(p));
    CHECK(std::abs(got - exact) <= exact * Histogram::kRelativeError + 1);
  }
  CHECK(h.percentile(100) == v.back());
}

TEST_CASE("negatives, huge values, merge and clear") {
  Histogram a, b;
  a.record(-5);
  CHECK(a.min() == 0);
  b.record(std::int64_t{1} << 50);
  CHECK(b.count() == 1);
  a.merge(b);
  CHECK(a.count() == 2);
  CHECK(a.max() == std::int64_t{1} << 50);
  auto bs = a.buckets();
  REQUIRE(bs.size() == 2);
  CHECK(bs[0].low == 0);
  CHECK(bs[1].count == 1);
  a.clear();
  CHECK(a.count() == 0);
  CHECK(a.percentile(50) == 0);
  CHECK(a.buckets().empty());
}
