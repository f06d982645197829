// fault: the deterministic-enough coin both DTP tools flip for --drop and --reorder (fault
// injection for tests and experiments). A xorshift generator seeded from the kernel; not for
// anything an attacker must not predict.
#pragma once

#include <cstdint>

#include "lib/base/random.h"

namespace dl::dtp {

class Coin {
 public:
  Coin() : s_(secure_random_u64() | 1) {}
  std::uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 2685821657736338717ull;
  }
  bool flip(double p) { return p > 0 && static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }

 private:
  std::uint64_t s_;
};

}  // namespace dl::dtp
