// frame: the native wire protocol's codec (version 2), pure: no I/O, no allocation in decode.
//
// Every frame is a 32-byte big-endian header followed by `length` payload bytes:
//   0 u8 marker 0xD7 | 1 u8 type | 2 u16 flags | 4 u32 length | 8 u64 seq
//   16 f64 timestamp | 24 u64 checksum = XXH3-64(payload, seed = XXH3-64(header bytes 0..23))
// flags are 0 except on ERROR frames, where bit 0 (kFlagRetryable) says the refusal is
// temporary (the dialer may try again) rather than final.
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
inline constexpr std::uint16_t kVersion = 2;
inline constexpr std::uint16_t kFlagRetryable = 1;  // ERROR only
inline constexpr std::uint32_t kHardMaxPayload = 1u << 30;  // no configuration may exceed this

enum class Type : std::uint8_t {
  hello = 1,      // handshake, both directions, first frame on every connection
  data = 2,       // one message; seq counts from 1 per direction and session
  ack = 3,        // seq = highest DATA/END seq delivered; payload u64 window (credit, see Hello)
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
            std::span<const std::uint8_t> payload, std::uint16_t flags = 0);

// Inside TLS (dl-protocol(7), TLS (KEYS)) the record's authentication tag already protects every
// byte, so DATA frames carry checksum 0 and their checksum is not checked: a link with keys
// passes `Integrity::tls` to both calls below. Every other frame type keeps its checksum.
enum class Integrity { checksum, tls };
void encode_data(std::uint8_t* out, std::uint64_t seq, double timestamp,
                 std::span<const std::uint8_t> payload, Integrity integrity);
// encode_data for a payload that is not in place yet: copies it to out + kHeaderSize and
// checksums it in the same pass (frame_checksum_copy). `payload` must not overlap the frame.
void encode_data_copy(std::uint8_t* out, std::uint64_t seq, double timestamp,
                      std::span<const std::uint8_t> payload, Integrity integrity);

// A DATA header for a payload someone else already checksummed under an identical header (a
// relay forwarding a frame it verified, under the same seq and timestamp): header bytes 0..23
// are the same, so the checksum is too, and the payload need not be read again.
void encode_data_header(std::uint8_t* out, std::uint64_t seq, double timestamp, std::uint32_t length,
                        std::uint64_t checksum);

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
Decoded decode(std::span<const std::uint8_t> buf, std::uint32_t max_payload,
               Integrity integrity = Integrity::checksum);

// A one-line description of a bad decode for error messages.
Error decode_error(const Decoded& d, std::uint32_t max_payload, std::string_view context);

// HELLO payload (version 2): fixed 72 bytes, big-endian.
//   0 "DLNK" | 4 u16 version | 6 u16 flags (0) | 8 u64[2] session id | 24 u64 incarnation
//   32 u64 token | 40 u64 recv_next | 48 u64 delivered | 56 u32 max_message | 60 u32 timeout_ms
//   64 u64 window
// The dialer names the session (random, getrandom) and sends the incarnation and token it last
// received from the listener (0 and 0 for a new session). The listener answers with its own
// incarnation (random per process, so a restarted listener is recognised) and a fresh token that
// the dialer must present on its next connection (so a replayed HELLO is refused).
inline constexpr std::size_t kHelloSize = 72;
inline constexpr std::size_t kAckSize = 8;
inline constexpr char kHelloMagic[4] = {'D', 'L', 'N', 'K'};
struct Hello {
  std::uint16_t version = kVersion;
  std::uint16_t flags = 0;
  std::uint64_t session_hi = 0, session_lo = 0;
  std::uint64_t incarnation = 0;   // the listener's process incarnation (dialer: the one it knows)
  std::uint64_t token = 0;         // listener: next resume token; dialer: the last one received
  std::uint64_t recv_next = 1;     // next DATA seq this side expects; everything before is held
  std::uint64_t delivered = 0;     // highest seq handed to the application (an ack); <= recv_next-1
  std::uint32_t max_message = 0;   // largest payload this side accepts
  std::uint32_t timeout_ms = 0;    // this side's receive timeout; the peer keeps it fed
  std::uint64_t window = 0;        // credit: frame bytes (headers included) this side takes
                                   // beyond what it delivered
};
void encode_hello(std::uint8_t* out /*kHelloSize*/, const Hello& hello);
// Errors: protocol "bad-magic", "version" (final: the peer must be upgraded), "bad-hello".
Result<Hello> decode_hello(std::span<const std::uint8_t> payload);

// ACK payload: u64 window (the receiver's credit beyond the acknowledged seq).
void encode_ack(std::uint8_t* out /*kAckSize*/, std::uint64_t window);
// Errors: protocol "bad-ack" when the payload is not 8 bytes.
Result<std::uint64_t> decode_ack(std::span<const std::uint8_t> payload);

// ERROR payload: "ID\0human text" (text cut to 1024 bytes). The header's kFlagRetryable bit
// says whether the receiver may try again; decode_error_payload() turns both into an Error whose
// `final` follows the flag, so no caller compares id strings to decide on a retry.
std::string encode_error_payload(std::string_view id, std::string_view text);
Error decode_error_payload(std::span<const std::uint8_t> payload, std::string_view context,
                           bool retryable = false);
// A whole ERROR frame (header and payload), ready to write.
std::string encode_error_frame(std::string_view id, std::string_view text, bool retryable,
                               double timestamp);

}  // namespace dl::frame
