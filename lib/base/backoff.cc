#include "lib/base/backoff.h"

#include <algorithm>
#include <cmath>

namespace dl {

Backoff::Backoff(BackoffPolicy policy, std::uint64_t seed) : policy_(policy), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  double base = static_cast<double>(policy_.initial.count()) *
                std::pow(policy_.factor, std::min(attempt_, 62));
  base = std::min(base, static_cast<double>(policy_.max.count()));
  ++attempt_;
  double jitter = std::clamp(policy_.jitter, 0.0, 1.0);
  double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double delay = base * (1.0 - jitter * u);
  return std::chrono::milliseconds(std::max<long long>(1, std::llround(delay)));
}

}  // namespace dl
