// random: unpredictable bytes from the kernel (getrandom(2)), for session and incarnation ids,
// nonces and anything an observer must not guess. Not for jitter or test data: those use a
// cheap seeded generator. Blocks only on a machine whose entropy pool is not yet initialised.
#pragma once

#include <cstdint>
#include <span>

namespace dl {

// Fills `out` completely. The kernel call cannot fail on Linux >= 3.17 for these sizes; a
// failure (ENOSYS in a strange sandbox) falls back to /dev/urandom and, failing that, aborts:
// an id that might repeat is worse than no program.
void secure_random(std::span<std::uint8_t> out);
std::uint64_t secure_random_u64();

}  // namespace dl
