// Fuzz target for the DTP packet decoder and its range reader.
// fuzz-sources: lib/codec/dtp_packet.cc lib/codec/range_set.cc
#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/codec/dtp_packet.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dl::dtp::Packet p;
  const char* id = dl::dtp::decode(std::span<const std::uint8_t>(data, size), p);
  if (*id) return 0;
  if (p.type == dl::dtp::Type::request) {
    dl::dtp::RangeReader rr(p.request);
    dl::ByteRange r;
    std::uint32_t n = 0;
    std::uint64_t prev = 0;
    dl::RangeSet set;
    while (rr.next(r)) {
      if (r.start >= r.end) __builtin_trap();
      if (n > 0 && r.start <= prev) __builtin_trap();  // sorted, disjoint, not touching
      prev = r.end;
      set.add(r.start, r.end);
      ++n;
    }
    if (n != p.request.count || set.count() != n) __builtin_trap();
  }
  if (p.type == dl::dtp::Type::data && p.data.bytes.size() + dl::dtp::kDataHeaderSize != size) __builtin_trap();
  return 0;
}
