#include "lib/codec/range_set.h"

#include <algorithm>

namespace dl {

void RangeSet::add(std::uint64_t start, std::uint64_t end) {
  if (start >= end) return;
  // The first range that starts after `start`; the one before it may overlap or touch.
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) {
      if (prev->second >= end) return;  // already covered: the common duplicate case
      if (it == m_.end() || it->first > end) {
        // Extends the range before it and swallows nothing: grow it in place (no node churn,
        // the common case of data arriving in order).
        total_ += end - prev->second;
        prev->second = end;
        return;
      }
      start = prev->first;
      total_ -= prev->second - prev->first;
      end = std::max(end, prev->second);
      it = m_.erase(prev);
    }
  }
  while (it != m_.end() && it->first <= end) {
    end = std::max(end, it->second);
    total_ -= it->second - it->first;
    it = m_.erase(it);
  }
  m_.emplace_hint(it, start, end);
  total_ += end - start;
}

void RangeSet::add(const RangeSet& other) {
  for (const auto& [s, e] : other.m_) add(s, e);
}

void RangeSet::remove(std::uint64_t start, std::uint64_t end) {
  if (start >= end) return;
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) --it;
  while (it != m_.end() && it->first < end) {
    std::uint64_t s = it->first, e = it->second;
    if (e <= start) {
      ++it;
      continue;
    }
    total_ -= e - s;
    it = m_.erase(it);
    if (s < start) {
      m_.emplace(s, start);
      total_ += start - s;
    }
    if (e > end) {
      it = m_.emplace(end, e).first;
      total_ += e - end;
      ++it;
    }
  }
}

bool RangeSet::contains(std::uint64_t start, std::uint64_t end) const {
  if (start >= end) return true;
  auto it = m_.upper_bound(start);
  if (it == m_.begin()) return false;
  --it;
  return it->first <= start && it->second >= end;
}

std::uint64_t RangeSet::overlap(std::uint64_t start, std::uint64_t end) const {
  if (start >= end) return 0;
  std::uint64_t n = 0;
  auto it = m_.upper_bound(start);
  if (it != m_.begin()) --it;
  for (; it != m_.end() && it->first < end; ++it) {
    std::uint64_t s = std::max(start, it->first), e = std::min(end, it->second);
    if (s < e) n += e - s;
  }
  return n;
}

bool RangeSet::isolated(std::uint64_t start, std::uint64_t end) const {
  if (start >= end) return false;
  auto it = m_.upper_bound(start);  // the first range that starts after `start`
  if (it != m_.end() && it->first <= end) return false;
  return it == m_.begin() || std::prev(it)->second < start;
}

std::uint64_t RangeSet::first_missing_from(std::uint64_t at) const {
  auto it = m_.upper_bound(at);
  if (it == m_.begin()) return at;
  --it;
  return it->second > at ? it->second : at;
}

std::vector<ByteRange> RangeSet::ranges() const {
  std::vector<ByteRange> out;
  out.reserve(m_.size());
  for (const auto& [s, e] : m_) out.push_back({s, e});
  return out;
}

RangeSet RangeSet::missing_from(const RangeSet& universe) const {
  RangeSet out;
  for (const auto& [us, ue] : universe.m_) {
    std::uint64_t at = us;
    auto it = m_.upper_bound(us);
    if (it != m_.begin()) --it;
    for (; it != m_.end() && it->first < ue && at < ue; ++it) {
      if (it->second <= at) continue;
      if (it->first > at) out.m_.emplace_hint(out.m_.end(), at, it->first), out.total_ += it->first - at;
      at = std::max(at, it->second);
    }
    if (at < ue) out.m_.emplace_hint(out.m_.end(), at, ue), out.total_ += ue - at;
  }
  return out;
}

}  // namespace dl
