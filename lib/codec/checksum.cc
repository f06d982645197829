#include "lib/codec/checksum.h"

#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dl {
namespace detail {

std::uint64_t frame_checksum_generic(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n) {
  return XXH3_64bits_withSeed(payload, n, XXH3_64bits(header24, 24));
}

#include "lib/codec/checksum_copy.inc"

std::uint64_t frame_checksum_copy_generic(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                          std::size_t n) {
  return checksum_copy(header24, dst, src, n);
}

bool have_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

}  // namespace detail

std::uint64_t frame_checksum(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n) {
  static const bool avx2 = detail::have_avx2();
  // Small frames gain nothing from the wide path.
  if (avx2 && n >= 1024) return detail::frame_checksum_avx2(header24, payload, n);
  return detail::frame_checksum_generic(header24, payload, n);
}

std::uint64_t frame_checksum_copy(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                  std::size_t n) {
  static const bool avx2 = detail::have_avx2();
  if (avx2 && n >= 1024) return detail::frame_checksum_copy_avx2(header24, dst, src, n);
  return detail::frame_checksum_copy_generic(header24, dst, src, n);
}

}  // namespace dl
