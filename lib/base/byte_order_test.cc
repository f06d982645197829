#include "lib/base/byte_order.h"

#include <doctest/doctest.h>
#include <cstdint>

using namespace dl;

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
