// Classic frame codec: a pure encoder/decoder for the seed Datalink library's wire format
// (see /work/shared/notes/datalink-classic.md): 5x0x20, int64 LE length, float64 LE timestamp,
// 5x0x21, payload, 5x0x22.
//
// It is: byte layout only. decode() inspects a buffer and says what is at its front (a frame, not
// enough bytes yet, or garbage to skip), never allocating, so a caller can bound memory before it
// buffers an announced payload. Unlike the seed, it lets the caller resynchronise after garbage.
//
// It is not: I/O, buffering, timeouts, or delivery policy. Keepalives and negative timestamps are
// decoded like any other frame; whether to deliver them is decided by the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dl::classic {

inline constexpr std::size_t kHeaderSize = 26, kFooterSize = 5, kOverhead = 31;
inline constexpr std::uint8_t kStartByte = 0x20, kHeaderEndByte = 0x21, kFooterByte = 0x22;
inline constexpr double kKeepaliveTimestamp = 1.0;

// Writes exactly kHeaderSize bytes. payload_size is put on the wire as a signed int64, so values
// above INT64_MAX would be read back as negative by any peer: callers must not send such frames.
void encode_header(std::uint8_t* out /*kHeaderSize bytes*/, std::uint64_t payload_size,
                   double timestamp);
// Writes exactly kFooterSize bytes.
void encode_footer(std::uint8_t* out /*kFooterSize bytes*/);
// Appends a whole frame (kOverhead + payload.size() bytes) to out.
void append_frame(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> payload,
                  double timestamp);

enum class DecodeStatus { frame, need_more, garbage, too_large };

struct Decoded {
  DecodeStatus status;
  std::size_t consumed = 0;       // frame: whole frame size (31+N). garbage/too_large: bytes to skip, always >= 1. need_more: 0.
  std::size_t needed = 0;         // need_more: total bytes the buffer must hold before calling again (26, or 31+N)
  std::size_t payload_offset = 0; // frame: always 26
  std::size_t payload_size = 0;   // frame; too_large: the announced length (saturated to SIZE_MAX if it does not fit)
  double timestamp = 0;           // frame
  const char* reason = "";        // stable identifier for garbage/too_large: "bad-start", "bad-header-end", "negative-length", "bad-footer", "too-large"
};

// Pure: inspects buf, which starts where the previous frame ended. Never reads past buf, never
// allocates, never throws.
Decoded decode(std::span<const std::uint8_t> buf, std::uint64_t max_payload);

}  // namespace dl::classic
