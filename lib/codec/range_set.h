// RangeSet: a set of byte offsets kept as sorted, disjoint, non-adjacent half-open ranges
// [start, end) of 64-bit offsets. DTP uses it for what a client has received, what it still
// wants, and what a server must send in a pass. Pure arithmetic: no I/O. Adding a range is
// O(log n) plus the ranges it swallows; memory is one map node per range (holes, not bytes).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace dl {

struct ByteRange {
  std::uint64_t start = 0, end = 0;  // half-open; empty when start >= end
  std::uint64_t size() const { return end > start ? end - start : 0; }
  bool operator==(const ByteRange&) const = default;
};

class RangeSet {
 public:
  RangeSet() = default;
  explicit RangeSet(const std::vector<ByteRange>& ranges) {
    for (const auto& r : ranges) add(r.start, r.end);
  }

  // Adds [start, end), merging with whatever it overlaps or touches. Empty ranges are ignored.
  void add(std::uint64_t start, std::uint64_t end);
  void add(const RangeSet& other);
  // Removes [start, end), splitting a range when the hole falls inside it.
  void remove(std::uint64_t start, std::uint64_t end);

  bool contains(std::uint64_t start, std::uint64_t end) const;  // every byte of [start, end)
  std::uint64_t overlap(std::uint64_t start, std::uint64_t end) const;  // bytes of [start, end) in the set
  // Whether add(start, end) would make one range more: [start, end) neither overlaps nor
  // touches any range of the set (false for an empty range, which adds nothing).
  bool isolated(std::uint64_t start, std::uint64_t end) const;
  // The end of the range that holds `at`, or `at` itself when `at` is not in the set: the
  // first offset at or after `at` that is missing.
  std::uint64_t first_missing_from(std::uint64_t at) const;

  std::uint64_t total() const { return total_; }  // bytes in the set
  std::size_t count() const { return m_.size(); }
  bool empty() const { return m_.empty(); }
  void clear() { m_.clear(); total_ = 0; }
  std::vector<ByteRange> ranges() const;

  // Bytes of `universe` that are not in this set (universe minus this), in order.
  RangeSet missing_from(const RangeSet& universe) const;

  bool operator==(const RangeSet& o) const { return m_ == o.m_; }

 private:
  std::map<std::uint64_t, std::uint64_t> m_;  // start -> end
  std::uint64_t total_ = 0;
};

}  // namespace dl
