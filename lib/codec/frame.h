// frame: the native wire protocol's codec (version 1), pure: no I/O, no allocation in decode.
//
// Every frame is a 32-byte big-endian header followed by `length` payload bytes:
//   0 u8 marker 0xD7 | 1 u8 type | 2 u16 flags (0) | 4 u32 length | 8 u64 seq
//   16 f64 timestamp | 24 u64 checksum = XXH3-64(payload, seed = XXH3-64(header bytes 0..23))
// The byte-by-byte description for users is man/dl-protocol.7; keep the two in step.
// What this is not: the session logic (handshake, acks, replay) lives in link.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lib/base/byte_order.h"
#include "lib/base/error.h"

namespace dl::frame {

inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::uint8_t kMarker = 0xD7;
inline constexpr std::uint16_t kVersion = 1;
inline constexpr std::uint32_t kHardMaxPayload = 1u << 30;  // no configuration may exceed this

enum class Type : std::uint8_t {
  hello = 1,      // handshake, both directions, first frame on every connection
  data = 2,       // one message; seq counts from 1 per direction and session
  ack = 3,        // seq = highest DATA/END seq delivered to the application
  keepalive = 4,  // link activity only
  end = 5,        // end of this direction's stream; takes the next seq and is acked like data
  error = 6,      // payload "ID\0text"; the sender closes the connection after it
};

struct Header {
  Type type = Type::data;
  std::uint16_t flags = 0;
  std::uint32_t length = 0;
  std::uint64_t seq = 0;
  double timestamp = 0;
  std::uint64_t checksum = 0;
};

// Fills the 32 header bytes at `out` for `payload` (checksum included).
void encode(std::uint8_t* out, Type type, std::uint64_t seq, double timestamp,
            std::span<const std::uint8_t> payload);

enum class Status { frame, need_more, bad };
struct Decoded {
  Status status = Status::need_more;
  Header header;
  std::size_t frame_size = 0;  // frame: header + payload
  std::size_t needed = 0;      // need_more: bytes the buffer must hold before trying again
  const char* id = "";         // bad: "bad-marker", "bad-type", "bad-flags", "too-large", "bad-checksum"
  std::uint64_t announced = 0; // bad/too-large: the length the header claimed
};

// Decodes the frame at the start of `buf`. Checks the header as soon as it is complete (so an
// absurd length is refused before anyone waits for it), then the checksum over the whole frame.
Decoded decode(std::span<const std::uint8_t> buf, std::uint32_t max_payload);

// A one-line description of a bad decode for error messages.
Error decode_error(const Decoded& d, std::uint32_t max_payload, std::string_view context);

// HELLO payload: fixed 48 bytes.
//   0 "DLNK" | 4 u16 version | 6 u16 flags | 8 u64[2] session id | 24 u64 recv_next
//   32 u32 max_message | 36 u32 timeout_ms | 40 u64 delivered
inline constexpr std::size_t kHelloSize = 48;
inline constexpr char kHelloMagic[4] = {'D', 'L', 'N', 'K'};
struct Hello {
  std::uint16_t version = kVersion;
  std::uint16_t flags = 0;
  std::uint64_t session_hi = 0, session_lo = 0;
  std::uint64_t recv_next = 1;     // next DATA seq this side expects; everything before is held
  std::uint32_t max_message = 0;   // largest payload this side accepts
  std::uint32_t timeout_ms = 0;    // this side's receive timeout; the peer keeps it fed
  std::uint64_t delivered = 0;     // highest seq handed to the application (an ack); <= recv_next-1
};
void encode_hello(std::uint8_t* out /*kHelloSize*/, const Hello& hello);
// Errors: protocol "bad-magic", "version", "bad-hello".
Result<Hello> decode_hello(std::span<const std::uint8_t> payload);

// ERROR payload: "ID\0human text".
std::string encode_error_payload(std::string_view id, std::string_view text);
Error decode_error_payload(std::span<const std::uint8_t> payload, std::string_view context);

}  // namespace dl::frame
