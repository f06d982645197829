// Unit tests for the flag readers of dtp.h: --range and fractions (--drop).
#include <doctest/doctest.h>

#include "lib/dtp/dtp.h"

using namespace dl;

TEST_CASE("--range: START-END, START-, LENGTH@START, sums of sizes, 64-bit offsets") {
  auto r = parse_ranges("0-1M,4G+1M-4G+2M,100-,512@4G");
  REQUIRE(r.ok());
  REQUIRE(r->size() == 4);
  CHECK((*r)[0] == ByteRange{0, 1 << 20});
  CHECK((*r)[1] == ByteRange{(4ull << 30) + (1 << 20), (4ull << 30) + (2 << 20)});
  CHECK((*r)[2] == ByteRange{100, UINT64_MAX});
  CHECK((*r)[3] == ByteRange{4ull << 30, (4ull << 30) + 512});
  for (const char* bad : {"", "5-3", "5-5", "x-9", "10", "0@5", "1-2,,", "18446744073709551615@2"}) {
    auto b = parse_ranges(bad);
    CHECK_FALSE(b.ok());
    if (!b.ok()) CHECK(b.error().kind == ErrorKind::usage);
  }
}

TEST_CASE("fractions: 0.1 and 10% alike; out of range and garbage refused") {
  CHECK(*parse_fraction("0.1", "--drop") == doctest::Approx(0.1));
  CHECK(*parse_fraction("10%", "--drop") == doctest::Approx(0.1));
  CHECK(*parse_fraction("0", "--drop") == 0);
  for (const char* bad : {"", "%", "-0.1", "1.5", "200%", "abc", "nan"}) CHECK_FALSE(parse_fraction(bad, "--drop").ok());
}
