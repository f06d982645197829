// Unit tests for the small pieces of base: units, exit table, random ids, atomic files, clocks.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>

#include "lib/base/atomic_file.h"
#include "lib/base/byte_order.h"
#include "lib/base/clock.h"
#include "lib/base/error.h"
#include "lib/base/random.h"
#include "lib/base/units.h"
#include "lib/base/xml_escape.h"

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

TEST_CASE("deadline_after saturates instead of overflowing") {
  auto now = Clock::now();
  CHECK(deadline_after(now, HUGE_VAL) == Clock::time_point::max());
  CHECK(deadline_after(now, 1e10) == Clock::time_point::max());
  CHECK(deadline_after(now, 0) == now);
  CHECK(deadline_after(now, 1.5) - now == std::chrono::milliseconds(1500));
}

TEST_CASE("exit table: every kind has one documented code") {
  CHECK(exit_code(ErrorKind::io) == 1);
  CHECK(exit_code(ErrorKind::usage) == 2);
  CHECK(exit_code(ErrorKind::resolve) == 3);
  CHECK(exit_code(ErrorKind::connect) == 4);
  CHECK(exit_code(ErrorKind::disconnected) == 5);
  CHECK(exit_code(ErrorKind::protocol) == 6);
  CHECK(exit_code(ErrorKind::timeout) == 7);
  CHECK(exit_code(ErrorKind::too_large) == 8);
  CHECK(exit_code(ErrorKind::incomplete) == 9);
  CHECK(exit_code(ErrorKind::auth) == 10);
  CHECK(exit_code(ErrorKind::cancelled) == 130);
}

TEST_CASE("retryable is decided by the error, not by comparing strings") {
  CHECK(is_retryable(make_error(ErrorKind::connect, "connect x")));
  CHECK(is_retryable(make_error(ErrorKind::disconnected, "x")));
  CHECK_FALSE(is_retryable(make_error(ErrorKind::usage, "x")));
  Error corrupt = protocol_error("bad-checksum", "x", "y");
  CHECK(is_retryable(corrupt));
  Error final_error = protocol_error("version", "x", "y", /*retryable=*/false);
  CHECK_FALSE(is_retryable(final_error));
}

TEST_CASE("secure_random: distinct ids") {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(secure_random_u64());
  CHECK(seen.size() == 1000);
}

TEST_CASE("byte order: explicit big and little endian") {
  std::uint8_t b[8];
  put_u32(b, 0x01020304);
  CHECK(b[0] == 1);
  CHECK(get_u32(b) == 0x01020304);
  put_u32_le(b, 0x01020304);
  CHECK(b[0] == 4);
  CHECK(get_u32_le(b) == 0x01020304);
  put_f64_le(b, 123.45);
  CHECK(b[0] == 0xcd);
  CHECK(b[7] == 0x40);
  CHECK(get_f64_le(b) == 123.45);
}

TEST_CASE("write_file_atomically replaces the whole content") {
  char dir[] = "/tmp/dlbase.XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string path = std::string(dir) + "/f";
  REQUIRE(write_file_atomically(path, std::string_view("first")).ok());
  REQUIRE(write_file_atomically(path, std::string_view("2")).ok());
  auto back = read_small_file(path, 100);
  REQUIRE(back.ok());
  CHECK(*back == "2");
  CHECK_FALSE(read_small_file(path, 0).ok());
  auto bad = write_file_atomically(std::string(dir) + "/no/such/dir/f", std::string_view("x"), "--session");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == ErrorKind::io);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("xml_escape: markup escaped, forbidden control characters replaced") {
  CHECK(xml_escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;");
  CHECK(xml_escape(std::string_view("x\x01y\tz\n", 6)) == "x?y\tz\n");
}
