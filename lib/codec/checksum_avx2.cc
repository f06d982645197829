// The AVX2 build of the frame checksum. Only called after a CPU check (checksum.cc); on other
// architectures it is the generic code again.
#include "lib/codec/checksum.h"

#include <cstring>

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2")
#endif
// The target pragmas do not define __AVX2__, which xxhash.h reads to choose its kernel.
#define XXH_VECTOR 2 /* XXH_AVX2 */
#include <immintrin.h>
#endif
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dl::detail {

std::uint64_t frame_checksum_avx2(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n) {
  return XXH3_64bits_withSeed(payload, n, XXH3_64bits(header24, 24));
}

#include "lib/codec/checksum_copy.inc"

std::uint64_t frame_checksum_copy_avx2(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                       std::size_t n) {
  return checksum_copy(header24, dst, src, n);
}

}  // namespace dl::detail

#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute pop
#endif
