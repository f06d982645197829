#include "lib/codec/checksum.h"

#include <doctest/doctest.h>

#include <vector>

using namespace dl;

TEST_CASE("the AVX2 and generic checksums agree on every length") {
  std::vector<std::uint8_t> buf(70000);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i * 131 + (i >> 9));
  std::uint8_t header[24];
  for (int i = 0; i < 24; ++i) header[i] = static_cast<std::uint8_t>(i);
  for (std::size_t n : {0, 1, 16, 17, 128, 129, 240, 241, 1023, 1024, 4096, 65537, 70000}) {
    auto g = detail::frame_checksum_generic(header, buf.data(), n);
    CHECK(frame_checksum(header, buf.data(), n) == g);
    if (detail::have_avx2()) CHECK(detail::frame_checksum_avx2(header, buf.data(), n) == g);
  }
}
