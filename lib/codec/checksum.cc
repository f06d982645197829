#include "lib/codec/checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dl {
namespace detail {

std::uint64_t frame_checksum_generic(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n) {
  return XXH3_64bits_withSeed(payload, n, XXH3_64bits(header24, 24));
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

}  // namespace dl
