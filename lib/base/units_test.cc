#include "lib/base/units.h"

#include <doctest/doctest.h>
#include <cmath>
#include <string>

using namespace dl;

TEST_CASE("parse_size: binary multiples, refuses garbage and overflow") {
  CHECK(*parse_size("65536", "--x") == 65536);
  CHECK(*parse_size("64K", "--x") == 65536);
  CHECK(*parse_size("16M", "--x") == 16u << 20);
  CHECK(*parse_size("2G", "--x") == 2ull << 30);
  CHECK(*parse_size("1T", "--x") == 1ull << 40);
  CHECK_FALSE(parse_size("", "--x").ok());
  CHECK_FALSE(parse_size("-1", "--x").ok());
  CHECK_FALSE(parse_size("12Q", "--x").ok());
  CHECK_FALSE(parse_size("99999999999999999999", "--x").ok());
  CHECK_FALSE(parse_size("20000000T", "--x").ok());
  auto e = parse_size("abc", "--chunk");
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().kind == ErrorKind::usage);
  CHECK(e.error().message().find("--chunk 'abc'") != std::string::npos);
}

TEST_CASE("parse_duration: one meaning per value") {
  CHECK(*parse_duration("2.5", "-w") == doctest::Approx(2.5));
  CHECK(*parse_duration("500ms", "-w") == doctest::Approx(0.5));
  CHECK(*parse_duration("2m", "-w") == doctest::Approx(120));
  CHECK(*parse_duration("0", "-w") == 0);
  CHECK(std::isinf(*parse_duration("inf", "-w")));
  CHECK(std::isinf(*parse_duration("forever", "-w")));
  CHECK_FALSE(parse_duration("nan", "-w").ok());
  CHECK_FALSE(parse_duration("-1", "-w").ok());
  CHECK_FALSE(parse_duration("1e300", "-w").ok());
  CHECK_FALSE(parse_duration("5x", "-w").ok());
  CHECK_FALSE(parse_duration("", "-w").ok());
}

TEST_CASE("parse_rate_bits: decimal multiples like iperf3") {
  CHECK(*parse_rate_bits("200M", "--rate") == doctest::Approx(200e6));
  CHECK(*parse_rate_bits("1.5G", "--rate") == doctest::Approx(1.5e9));
  CHECK(*parse_rate_bits("800k", "--rate") == doctest::Approx(800e3));
  CHECK_FALSE(parse_rate_bits("0", "--rate").ok());
  CHECK_FALSE(parse_rate_bits("fast", "--rate").ok());
}
