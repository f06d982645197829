// checksum: the frame checksum (XXH3-64 of the payload, seeded with XXH3-64 of the first 24
// header bytes), picking the widest vector unit the CPU has at run time (AVX2 on most x86-64,
// SSE2 otherwise, scalar elsewhere). Same value everywhere; only the speed differs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dl {

std::uint64_t frame_checksum(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);

// Copies n bytes from `src` to `dst` (not overlapping) and returns frame_checksum(header24, dst,
// n), in one pass: block by block, each block checksummed while it is still in the nearest
// cache. Cheaper than memcpy followed by frame_checksum when the payload is not in place yet
// (a bridge forwarding a message: ~20 % less for the pair).
std::uint64_t frame_checksum_copy(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                  std::size_t n);

namespace detail {
std::uint64_t frame_checksum_generic(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);
std::uint64_t frame_checksum_avx2(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);
std::uint64_t frame_checksum_copy_generic(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                          std::size_t n);
std::uint64_t frame_checksum_copy_avx2(const std::uint8_t* header24, std::uint8_t* dst, const std::uint8_t* src,
                                       std::size_t n);
// The block frame_checksum_copy copies and then checksums: well inside a first-level cache.
inline constexpr std::size_t kChecksumCopyBlock = 16 * 1024;
bool have_avx2();
}  // namespace detail

}  // namespace dl
