#include "lib/pymodaq/array_input.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace dl::pymodaq;
using Bytes = std::vector<std::uint8_t>;

namespace {
Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }
Bytes npy_v1(const std::string& header_dict, std::size_t data_bytes) {
  std::string h = header_dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  Bytes b = text("\x93NUMPY");
  b.push_back(1);
  b.push_back(0);
  b.push_back(h.size() & 0xff);
  b.push_back(h.size() >> 8);
  b.insert(b.end(), h.begin(), h.end());
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::uint8_t>(i));
  return b;
}
}  // namespace

TEST_CASE("text header framing, with every prefix asking for more") {
  Bytes b = text("ARRAY >i2 2x3\n");
  for (int i = 0; i < 12; ++i) b.push_back(static_cast<std::uint8_t>(i));
  for (std::size_t n = 0; n < b.size(); ++n) {
    ArrayParse p = parse_array(std::span<const std::uint8_t>(b.data(), n), 0, 1 << 20);
    INFO(n);
    REQUIRE(p.status == ArrayParse::Status::need_more);
    CHECK(p.needed > n);
  }
  Bytes two = b;
  two.insert(two.end(), b.begin(), b.end());
  ArrayParse p = parse_array(two, 0, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::array);
  CHECK(p.consumed == b.size());
  CHECK(p.array.dtype == ">i2");
  CHECK(p.array.shape == std::vector<std::uint32_t>{2, 3});
  CHECK(p.array.bytes.size() == 12);
}

TEST_CASE(".npy versions 1 and 2, 1-D and 0-d") {
  Bytes b = npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48);
  ArrayParse p = parse_array(b, 0, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::array);
  CHECK(p.array.dtype == "<f4");
  CHECK(p.array.shape == std::vector<std::uint32_t>{3, 4});
  CHECK(p.consumed == b.size());
  b = npy_v1("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 5);
  p = parse_array(b, 0, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::array);
  CHECK(p.array.shape == std::vector<std::uint32_t>{5});
  b = npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8);
  p = parse_array(b, 0, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::array);
  CHECK(p.array.shape == std::vector<std::uint32_t>{1});
  for (std::size_t n = 0; n < b.size(); ++n) {
    CHECK(parse_array(std::span<const std::uint8_t>(b.data(), n), 0, 1 << 20).status == ArrayParse::Status::need_more);
  }
}

TEST_CASE("bad input is named with its offset; sizes are bounded") {
  ArrayParse p = parse_array(text("HELLO world\n"), 100, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::bad);
  CHECK(p.error.message().find("byte 100") != std::string::npos);
  p = parse_array(text("ARRAY <q9 3\n"), 0, 1 << 20);
  CHECK(p.status == ArrayParse::Status::bad);
  p = parse_array(text("ARRAY <f8 20000x20000\n"), 0, 1 << 20);
  REQUIRE(p.status == ArrayParse::Status::bad);
  CHECK(p.error.kind == dl::ErrorKind::too_large);
  p = parse_array(text("XY"), 0, 1 << 20);
  CHECK(p.status == ArrayParse::Status::bad);
  p = parse_array(npy_v1("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", 32), 0, 1 << 20);
  CHECK(p.status == ArrayParse::Status::bad);
}
