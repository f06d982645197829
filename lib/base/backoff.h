// Backoff: the delay schedule between reconnect attempts: exponential growth from `initial`
// by `factor`, capped at `max`, each delay shortened by a random fraction of up to `jitter` so
// that many clients cut off together do not return together. Pure arithmetic, no sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace dl {

struct BackoffPolicy {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{5000};
  double factor = 2.0;
  double jitter = 0.5;  // 0: exact schedule; 0.5: each delay in [d/2, d]
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}, std::uint64_t seed = std::random_device{}());
  // The delay before the next attempt; grows with every call until reset().
  std::chrono::milliseconds next();
  // After a success: the next failure starts again from `initial`.
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  BackoffPolicy policy_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace dl
