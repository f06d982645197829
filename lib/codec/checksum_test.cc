#include "lib/codec/checksum.h"

#include <doctest/doctest.h>

#include <algorithm>
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

TEST_CASE("copy-and-checksum copies every byte and gives the plain checksum, on every length") {
  std::vector<std::uint8_t> src(3 * detail::kChecksumCopyBlock + 777);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 97 + (i >> 7));
  std::uint8_t header[24];
  for (int i = 0; i < 24; ++i) header[i] = static_cast<std::uint8_t>(200 - i);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{255}, std::size_t{1024},
                        detail::kChecksumCopyBlock - 1, detail::kChecksumCopyBlock, detail::kChecksumCopyBlock + 1,
                        2 * detail::kChecksumCopyBlock + 300, src.size()}) {
    CAPTURE(n);
    auto want = detail::frame_checksum_generic(header, src.data(), n);
    std::vector<std::uint8_t> a(n + 1, 0xEE), b(n + 1, 0xEE), c(n + 1, 0xEE);
    CHECK(frame_checksum_copy(header, a.data(), src.data(), n) == want);
    CHECK(detail::frame_checksum_copy_generic(header, b.data(), src.data(), n) == want);
    if (detail::have_avx2()) CHECK(detail::frame_checksum_copy_avx2(header, c.data(), src.data(), n) == want);
    for (auto* v : {&a, &b, &c}) {
      if (v == &c && !detail::have_avx2()) continue;
      CHECK(std::equal(src.begin(), src.begin() + static_cast<std::ptrdiff_t>(n), v->begin()));
      CHECK(v->back() == 0xEE);  // not one byte beyond
    }
  }
}
