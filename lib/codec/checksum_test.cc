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

TEST_CASE("the AVX2 and generic seeded XXH3 (DTP's datagram checksum) agree on every length") {
  std::vector<std::uint8_t> buf(70000);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i * 7 + (i >> 11));
  for (std::size_t n : {0, 1, 16, 17, 128, 129, 240, 241, 1023, 1024, 1464, 4096, 65499, 70000}) {
    for (std::uint64_t seed : {0ull, 0x44540104ull, ~0ull}) {
      auto g = detail::xxh3_seeded_generic(buf.data(), n, seed);
      CHECK(xxh3_seeded(buf.data(), n, seed) == g);
      if (detail::have_avx2()) CHECK(detail::xxh3_seeded_avx2(buf.data(), n, seed) == g);
    }
  }
}
