// histogram: a latency histogram with log-linear buckets (the HdrHistogram layout), so that
// percentiles come out with a bounded relative error whatever the spread of the values.
//
// Values are non-negative integers (nanoseconds in dlping). Values below 2*kSub (256) each have
// their own bucket (exact); above, every power-of-two range [2^k, 2^(k+1)) is cut into kSub
// (128) equal buckets, so a bucket is at most 1/128 of its lower bound wide. A percentile is
// reported as the middle of its bucket, clamped to the observed min and max: its relative error
// is at most 1/256 (0.39 %), the bound `kRelativeError` states. Values past 2^40 (18 minutes)
// are clamped into the top bucket. Fixed memory (about 35 KiB), no allocation when recording.
// What this is not: a time series; it forgets the order of the values.
#pragma once

#include <cstdint>
#include <vector>

namespace dl::ping {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr std::int64_t kSub = std::int64_t{1} << kSubBits;  // buckets per octave
  static constexpr int kMaxBits = 40;                                  // values clamp at 2^40
  static constexpr double kRelativeError = 1.0 / (2 * kSub);

  Histogram();

  void record(std::int64_t value);  // negatives count as 0
  void merge(const Histogram& other);
  void clear();

  std::uint64_t count() const { return count_; }
  std::int64_t min() const { return count_ ? min_ : 0; }
  std::int64_t max() const { return count_ ? max_ : 0; }

  // Nearest-rank percentile (p in [0, 100]): the value of the ceil(p/100 * count)-th smallest
  // sample, within kRelativeError. 0 when empty.
  std::int64_t percentile(double p) const;

  struct Bucket {
    std::int64_t low = 0, high = 0;  // values in [low, high)
    std::uint64_t count = 0;
  };
  // The non-empty buckets in increasing order.
  std::vector<Bucket> buckets() const;

  // Bucket layout, exposed for tests: index of a value and the bounds of an index.
  static int index_of(std::int64_t value);
  static std::int64_t bucket_low(int index);
  static std::int64_t bucket_high(int index);
  static int bucket_count();

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::int64_t min_ = 0, max_ = 0;
};

}  // namespace dl::ping
