#include "lib/ping/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace dl::ping {

namespace {
constexpr std::int64_t kTop = (std::int64_t{1} << Histogram::kMaxBits) - 1;
}

// Layout: indexes [0, 2*kSub) hold values 0..2*kSub-1 exactly. Above, the octave
// [2^k, 2^(k+1)) for k >= kSubBits+1 starts at index (k - kSubBits + 1) * kSub, with kSub
// buckets of width 2^(k - kSubBits).
int Histogram::index_of(std::int64_t v) {
  if (v < 0) v = 0;
  if (v > kTop) v = kTop;
  if (v < 2 * kSub) return static_cast<int>(v);
  int k = 63 - std::countl_zero(static_cast<std::uint64_t>(v));  // 2^k <= v
  int shift = k - kSubBits;
  return static_cast<int>((k - kSubBits + 1) * kSub + ((v >> shift) - kSub));
}

std::int64_t Histogram::bucket_low(int i) {
  if (i < 2 * kSub) return i;
  int k = static_cast<int>(i / kSub) + kSubBits - 1;
  int shift = k - kSubBits;
  return (kSub + i % kSub) << shift;
}

std::int64_t Histogram::bucket_high(int i) {
  if (i < 2 * kSub) return i + 1;
  int k = static_cast<int>(i / kSub) + kSubBits - 1;
  return bucket_low(i) + (std::int64_t{1} << (k - kSubBits));
}

int Histogram::bucket_count() { return index_of(kTop) + 1; }

Histogram::Histogram() : counts_(bucket_count(), 0) {}

void Histogram::record(std::int64_t v) {
  if (v < 0) v = 0;
  ++counts_[index_of(v)];
  if (count_ == 0 || v < min_) min_ = v;
  if (count_ == 0 || v > max_) max_ = v;
  ++count_;
}

void Histogram::merge(const Histogram& o) {
  if (o.count_ == 0) return;
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  min_ = count_ ? std::min(min_, o.min_) : o.min_;
  max_ = count_ ? std::max(max_, o.max_) : o.max_;
  count_ += o.count_;
}

void Histogram::clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
}

std::int64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  if (rank == count_) return max_;  // the extremes are known exactly
  if (rank == 1) return min_;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      int idx = static_cast<int>(i);
      std::int64_t lo = bucket_low(idx), hi = bucket_high(idx);
      std::int64_t mid = hi - lo <= 1 ? lo : lo + (hi - lo) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

std::vector<Histogram::Bucket> Histogram::buckets() const {
  std::vector<Bucket> out;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    int idx = static_cast<int>(i);
    out.push_back(Bucket{bucket_low(idx), bucket_high(idx), counts_[i]});
  }
  return out;
}

}  // namespace dl::ping
