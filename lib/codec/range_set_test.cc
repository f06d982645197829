// Unit tests for RangeSet: merging, removal, complements, and many ranges at once.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "lib/codec/range_set.h"

using dl::ByteRange;
using dl::RangeSet;

TEST_CASE("add merges overlapping and touching ranges, ignores empty ones") {
  RangeSet s;
  s.add(10, 20);
  s.add(30, 40);
  CHECK(s.count() == 2);
  CHECK(s.total() == 20);
  s.add(20, 30);  // touches both
  CHECK(s.count() == 1);
  CHECK(s.ranges() == std::vector<ByteRange>{{10, 40}});
  s.add(5, 5);
  s.add(7, 3);
  CHECK(s.total() == 30);
  s.add(0, 100);
  CHECK(s.ranges() == std::vector<ByteRange>{{0, 100}});
  s.add(50, 60);  // inside
  CHECK(s.total() == 100);
}

TEST_CASE("contains, overlap and first_missing_from") {
  RangeSet s({{0, 10}, {20, 30}});
  CHECK(s.contains(0, 10));
  CHECK(s.contains(22, 25));
  CHECK_FALSE(s.contains(5, 15));
  CHECK_FALSE(s.contains(10, 11));
  CHECK(s.overlap(5, 25) == 10);
  CHECK(s.overlap(10, 20) == 0);
  CHECK(s.first_missing_from(0) == 10);
  CHECK(s.first_missing_from(12) == 12);
  CHECK(s.first_missing_from(25) == 30);
}

TEST_CASE("isolated: whether add() would make one range more") {
  RangeSet s({{10, 20}, {30, 40}});
  CHECK(s.isolated(0, 5));
  CHECK(s.isolated(22, 28));
  CHECK(s.isolated(41, 42));
  CHECK_FALSE(s.isolated(5, 10));   // touches [10, 20) from below
  CHECK_FALSE(s.isolated(20, 21));  // touches it from above
  CHECK_FALSE(s.isolated(29, 30));
  CHECK_FALSE(s.isolated(15, 16));  // inside
  CHECK_FALSE(s.isolated(0, 100));  // swallows both
  CHECK_FALSE(s.isolated(25, 25));  // empty: adds nothing
  CHECK(RangeSet().isolated(0, 1));
  CHECK(RangeSet({{0, 1}}).isolated(2, UINT64_MAX));
  // Against add() itself, at random.
  std::mt19937 rng(2);
  RangeSet r;
  for (int i = 0; i < 20000; ++i) {
    std::uint64_t a = rng() % 100000, b = a + 1 + rng() % 8;
    bool iso = r.isolated(a, b);
    std::size_t before = r.count();
    r.add(a, b);
    CHECK(iso == (r.count() == before + 1));
  }
}

TEST_CASE("remove splits and trims") {
  RangeSet s({{0, 100}});
  s.remove(40, 60);
  CHECK(s.ranges() == std::vector<ByteRange>{{0, 40}, {60, 100}});
  CHECK(s.total() == 80);
  s.remove(30, 70);
  CHECK(s.ranges() == std::vector<ByteRange>{{0, 30}, {70, 100}});
  s.remove(0, 1000);
  CHECK(s.empty());
  CHECK(s.total() == 0);
}

TEST_CASE("missing_from is the complement within a universe") {
  RangeSet have({{10, 20}, {30, 40}});
  RangeSet all({{0, 50}});
  CHECK(have.missing_from(all).ranges() == std::vector<ByteRange>{{0, 10}, {20, 30}, {40, 50}});
  CHECK(have.missing_from(all).total() == 30);
  RangeSet two({{15, 35}, {38, 45}});
  CHECK(have.missing_from(two).ranges() == std::vector<ByteRange>{{20, 30}, {40, 45}});
  CHECK(RangeSet().missing_from(all) == all);
  CHECK(all.missing_from(have).empty());
}

TEST_CASE("64-bit offsets near and past 4 GiB") {
  const std::uint64_t g4 = 1ull << 32;
  RangeSet s;
  s.add(g4 - 100, g4 + 100);
  CHECK(s.total() == 200);
  s.add(UINT64_MAX - 10, UINT64_MAX);
  CHECK(s.count() == 2);
  CHECK(s.contains(g4 - 1, g4 + 1));
}

TEST_CASE("large counts: every other chunk of a million, then fill the holes") {
  RangeSet s;
  const std::uint64_t c = 1400;
  for (std::uint64_t i = 0; i < 1000000; i += 2) s.add(i * c, i * c + c);
  CHECK(s.count() == 500000);
  RangeSet all({{0, 1000000 * c}});
  RangeSet holes = s.missing_from(all);
  CHECK(holes.count() == 500000);
  CHECK(holes.total() == 500000 * c);
  // Fill in random order; the set must collapse into one range.
  std::vector<ByteRange> h = holes.ranges();
  std::mt19937_64 rng(7);
  std::shuffle(h.begin(), h.end(), rng);
  for (const auto& r : h) s.add(r.start, r.end);
  CHECK(s.count() == 1);
  CHECK(s.total() == 1000000 * c);
}

TEST_CASE("random operations agree with a bitmap") {
  std::mt19937 rng(1);
  std::vector<bool> bits(2000);
  RangeSet s;
  for (int i = 0; i < 5000; ++i) {
    std::uint64_t a = rng() % 2000, b = a + rng() % 50;
    if (b > 2000) b = 2000;
    bool add = rng() % 3 != 0;
    if (add) s.add(a, b); else s.remove(a, b);
    for (std::uint64_t k = a; k < b; ++k) bits[k] = add;
  }
  std::uint64_t total = 0;
  for (std::uint64_t k = 0; k < 2000; ++k) {
    total += bits[k];
    CHECK(s.contains(k, k + 1) == bits[k]);
  }
  CHECK(s.total() == total);
  auto r = s.ranges();
  for (std::size_t i = 1; i < r.size(); ++i) CHECK(r[i - 1].end < r[i].start);
}
