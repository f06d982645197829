// checksum: the frame checksum (XXH3-64 of the payload, seeded with XXH3-64 of the first 24
// header bytes), picking the widest vector unit the CPU has at run time (AVX2 on most x86-64,
// SSE2 otherwise, scalar elsewhere). Same value everywhere; only the speed differs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dl {

std::uint64_t frame_checksum(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);

namespace detail {
std::uint64_t frame_checksum_generic(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);
std::uint64_t frame_checksum_avx2(const std::uint8_t* header24, const std::uint8_t* payload, std::size_t n);
bool have_avx2();
}  // namespace detail

}  // namespace dl
