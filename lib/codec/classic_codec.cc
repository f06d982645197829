#include "classic_codec.h"

#include <bit>
#include <cstring>
#include <limits>

namespace dl::classic {
namespace {

constexpr std::size_t kMarkerSize = 5;
constexpr std::size_t kLengthOffset = 5;
constexpr std::size_t kTimestampOffset = 13;
constexpr std::size_t kHeaderEndOffset = 21;

// Byte-by-byte so the wire stays little-endian whatever the host's byte order.
void store_u64_le(std::uint8_t* out, std::uint64_t v) {
  for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::uint64_t load_u64_le(const std::uint8_t* in) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in[i]) << (8 * i);
  return v;
}

bool all_equal(const std::uint8_t* p, std::size_t n, std::uint8_t value) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != value) return false;
  return true;
}

Decoded skip(DecodeStatus status, std::size_t consumed, const char* reason) {
  Decoded d{status};
  d.consumed = consumed;
  d.reason = reason;
  return d;
}

}  // namespace

void encode_header(std::uint8_t* out, std::uint64_t payload_size, double timestamp) {
  std::memset(out, kStartByte, kMarkerSize);
  store_u64_le(out + kLengthOffset, payload_size);
  store_u64_le(out + kTimestampOffset, std::bit_cast<std::uint64_t>(timestamp));
  std::memset(out + kHeaderEndOffset, kHeaderEndByte, kMarkerSize);
}

void encode_footer(std::uint8_t* out) { std::memset(out, kFooterByte, kFooterSize); }

void append_frame(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> payload,
                  double timestamp) {
  const std::size_t base = out.size();
  out.resize(base + kOverhead + payload.size());
  std::uint8_t* p = out.data() + base;
  encode_header(p, payload.size(), timestamp);
  if (!payload.empty()) std::memcpy(p + kHeaderSize, payload.data(), payload.size());
  encode_footer(p + kHeaderSize + payload.size());
}

Decoded decode(std::span<const std::uint8_t> buf, std::uint64_t max_payload) {
  const std::uint8_t* p = buf.data();
  const std::size_t len = buf.size();

  // Judge the start marker on whatever is present, so garbage is skipped without waiting for a
  // full header's worth of bytes that may never come.
  const std::size_t start_present = len < kMarkerSize ? len : kMarkerSize;
  if (!all_equal(p, start_present, kStartByte)) {
    // No frame can begin before the next 0x20, so skip straight to it.
    std::size_t next = 1;
    while (next < len && p[next] != kStartByte) ++next;
    return skip(DecodeStatus::garbage, next, "bad-start");
  }
  if (len < kHeaderSize) {
    Decoded d{DecodeStatus::need_more};
    d.needed = kHeaderSize;
    return d;
  }

  // One byte only: in a run of six or more 0x20 the real start marker may begin one byte later.
  if (!all_equal(p + kHeaderEndOffset, kMarkerSize, kHeaderEndByte))
    return skip(DecodeStatus::garbage, 1, "bad-header-end");

  const std::uint64_t raw_length = load_u64_le(p + kLengthOffset);
  if (static_cast<std::int64_t>(raw_length) < 0)
    return skip(DecodeStatus::garbage, 1, "negative-length");
  // Also refuse lengths whose whole frame size would not fit in size_t (only possible on 32-bit
  // hosts): such a frame could never be buffered.
  constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();
  if (raw_length > max_payload || raw_length > kSizeMax - kOverhead) {
    Decoded d = skip(DecodeStatus::too_large, 1, "too-large");
    d.payload_size = raw_length > kSizeMax ? kSizeMax : static_cast<std::size_t>(raw_length);
    return d;
  }

  const std::size_t payload_size = static_cast<std::size_t>(raw_length);
  const std::size_t frame_size = kOverhead + payload_size;
  if (len < frame_size) {
    Decoded d{DecodeStatus::need_more};
    d.needed = frame_size;
    return d;
  }
  if (!all_equal(p + kHeaderSize + payload_size, kFooterSize, kFooterByte))
    return skip(DecodeStatus::garbage, 1, "bad-footer");

  Decoded d{DecodeStatus::frame};
  d.consumed = frame_size;
  d.payload_offset = kHeaderSize;
  d.payload_size = payload_size;
  d.timestamp = std::bit_cast<double>(load_u64_le(p + kTimestampOffset));
  return d;
}

}  // namespace dl::classic
