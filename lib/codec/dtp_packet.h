// dtp_packet: the DTP wire format (version 1), pure: encoders write into caller buffers, the
// decoder validates every field and hands back views into the datagram (no allocation).
//
// Every datagram starts with a 16-byte big-endian header:
//   0 u8 'D' | 1 u8 'T' | 2 u8 version (1) | 3 u8 type | 4 u32 checksum | 8 u64 session id
// checksum = low 32 bits of XXH3-64(bytes 8..end, seed = the big-endian u32 at bytes 0..3).
// The bodies per type, field by field, are in man/dtp.7; keep the two in step.
// What this is not: sessions, pacing and retries live in lib/dtp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "lib/codec/range_set.h"

namespace dl::dtp {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kDataHeaderSize = kHeaderSize + 16;  // + offset, seq, pass
inline constexpr std::size_t kMaxDatagram = 65507;                // IPv4 UDP payload limit
inline constexpr std::size_t kMinChunk = 64;
inline constexpr std::size_t kMaxChunk = kMaxDatagram - kDataHeaderSize;
inline constexpr std::size_t kMaxName = 1024;
inline constexpr std::size_t kMaxError = 512;
inline constexpr std::size_t kErrorOverhead = kHeaderSize + 4;  // an ERROR's bytes besides its text
inline constexpr std::uint32_t kMaxParts = 1024;  // REQUEST datagrams per pass
// An OPEN is zero-padded to at least this many bytes, and a server answers an OPEN with
// nothing larger than it: a forged source address buys no amplification.
inline constexpr std::size_t kMinOpen = 256;

enum class Type : std::uint8_t {
  open = 1,       // c->s: which payload, and the chunk size the client wants
  meta = 2,       // s->c: size, SHA-256, granted chunk size
  request = 3,    // c->s: one part of a pass: ranges to send
  data = 4,       // s->c: one chunk at a 64-bit offset
  end = 5,        // s->c: the pass is fully sent
  report = 6,     // c->s: what arrived so far (drives rate adaptation; keeps the session alive)
  stop = 7,       // either way: the session is over
  keepalive = 8,  // either way: still here (a server hashing a large payload says so)
  error = 9,      // s->c: refused, with a code and a line of text
};

enum class ErrorCode : std::uint16_t {
  unknown_payload = 1,  // no such name (or not a regular file, or outside the root)
  bad_request = 2,      // a field failed validation; the text names it
  busy = 3,             // too many sessions
  io = 4,               // the server could not read the payload
};

enum class StopReason : std::uint16_t { done = 0, cancelled = 1, shutdown = 2, expired = 3 };

struct Open {
  std::uint16_t chunk = 0;
  std::string_view name;
};
struct Meta {
  std::uint64_t size = 0;
  std::span<const std::uint8_t, 32> sha256{static_cast<const std::uint8_t*>(nullptr), 32};
  std::uint16_t chunk = 0;
  std::uint64_t mtime_ns = 0;
  std::uint64_t cookie = 0;  // the server's secret for this session; REQUESTs must echo it
};
struct Request {
  std::uint32_t pass = 0;
  std::uint16_t part = 0;
  bool urgent = false;          // flag bit 0: send these before the rest of the pass (repairs)
  std::uint64_t rate_bits = 0;  // the client's cap in bit/s; 0: none
  std::uint32_t count = 0;      // ranges encoded in `ranges`
  std::uint64_t cookie = 0;     // META's cookie: proves the client receives at its address
  std::span<const std::uint8_t> ranges;  // validated varint pairs; read with RangeReader
};
struct Data {
  std::uint64_t offset = 0;
  std::uint32_t seq = 0;
  std::uint32_t pass = 0;
  std::span<const std::uint8_t> bytes;
};
struct End {
  std::uint32_t pass = 0;
  std::uint64_t sent = 0;        // DATA datagrams sent in this pass
  std::uint64_t parts_seen = 0;  // bit i: REQUEST part i (of the first 64) of this pass arrived
};
struct Report {
  std::uint32_t pass = 0;
  std::uint32_t highest_seq = 0;    // highest DATA seq seen
  std::uint64_t received = 0;       // DATA datagrams received in the session (duplicates too)
};
struct Stop {
  StopReason reason = StopReason::done;
};
struct Keepalive {
  std::uint16_t state = 0;  // 0 nothing special, 1 server is hashing the payload
};
struct ErrorReply {
  ErrorCode code = ErrorCode::bad_request;
  std::string_view text;
};

struct Packet {
  Type type = Type::keepalive;
  std::uint64_t session = 0;
  Open open;
  Meta meta;
  Request request;
  Data data;
  End end;
  Report report;
  Stop stop;
  Keepalive keepalive;
  ErrorReply error;
};

// Decodes and validates one datagram. Returns "" on success, else a stable id:
// "short", "bad-magic", "bad-version", "bad-type", "bad-checksum", "bad-session", "bad-length",
// "bad-chunk", "bad-name", "bad-ranges", "bad-field". `max_chunk` bounds DATA payloads.
const char* decode(std::span<const std::uint8_t> dgram, Packet& out);

// Encoders write a whole datagram at `out` (which must hold kMaxDatagram bytes unless said
// otherwise) and return its length. They do not validate: the caller owns the values.
std::size_t encode_open(std::uint8_t* out, std::uint64_t session, std::uint16_t chunk, std::string_view name);
std::size_t encode_meta(std::uint8_t* out, std::uint64_t session, std::uint64_t size,
                        std::span<const std::uint8_t, 32> sha256, std::uint16_t chunk, std::uint64_t mtime_ns,
                        std::uint64_t cookie);
// Writes as many ranges of `ranges` from index `from` as fit in `max_len` bytes; returns the
// datagram length and sets `next` to the first range not written.
std::size_t encode_request(std::uint8_t* out, std::size_t max_len, std::uint64_t session,
                           std::uint32_t pass, std::uint16_t part, std::uint64_t rate_bits,
                           std::uint64_t cookie, std::span<const ByteRange> ranges, std::size_t from,
                           std::size_t& next, bool urgent = false);
// DATA: writes the 32-byte header in front of the `n` payload bytes already at out + 32.
void encode_data_header(std::uint8_t* out, std::uint64_t session, std::uint64_t offset,
                        std::uint32_t seq, std::uint32_t pass, std::size_t n);
std::size_t encode_end(std::uint8_t* out, std::uint64_t session, std::uint32_t pass,
                       std::uint64_t sent, std::uint64_t parts_seen);
std::size_t encode_report(std::uint8_t* out, std::uint64_t session, std::uint32_t pass,
                          std::uint32_t highest_seq, std::uint64_t received);
std::size_t encode_stop(std::uint8_t* out, std::uint64_t session, StopReason reason);
std::size_t encode_keepalive(std::uint8_t* out, std::uint64_t session, std::uint16_t state);
std::size_t encode_error(std::uint8_t* out, std::uint64_t session, ErrorCode code, std::string_view text);

// Reads the validated range list of a REQUEST in order.
class RangeReader {
 public:
  explicit RangeReader(const Request& r) : p_(r.ranges.data()), end_(p_ + r.ranges.size()) {}
  bool next(ByteRange& out);

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::uint64_t prev_end_ = 0;
};

std::string_view type_name(Type t);
std::string_view error_code_name(ErrorCode c);

}  // namespace dl::dtp
