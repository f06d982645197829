// ping_payload: the payloads of dlping's three-way exchange, carried in native DATA frames
// (frame.h; frame seq = probe seq). Pure: no I/O, no clocks, no allocation.
//
// Every payload opens with a fixed 64-byte block, big-endian, then padding up to the probe size:
//   0 "DLPG" | 4 u8 version (1) | 5 u8 kind | 6 u16 flags (0) | 8 u64 seq
//   16 i64 t0  client: ping sent                 (client's monotonic clock, ns)
//   24 i64 t1  responder: ping received          (responder's monotonic clock, ns)
//   32 i64 t2  responder: pong sent              (responder's monotonic clock, ns)
//   40 i64 t3  client: pong received             (client's clock)
//   48 i64 t4  client: ack3 sent                 (client's clock)
//   56 i64 rtt client's RTT with the responder's turnaround removed: (t3 - t0) - (t2 - t1)
// kind 1 PING  client -> responder: seq, t0; the rest 0; padding to the probe size.
// kind 2 PONG  responder -> client: the PING with kind 2, t1 and t2 filled, same size.
// kind 3 ACK3  client -> responder: every field; exactly 64 bytes (no padding).
// Each side subtracts only its own clock's stamps from each other, so the two clocks need not
// agree. The user-facing description is the DLPING section of man/dl-protocol.7.
// What this is not: the socket loop (lib/ping/dlping.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/base/error.h"

namespace dl::ping {

inline constexpr std::size_t kPayloadHeader = 64;
inline constexpr char kPingMagic[4] = {'D', 'L', 'P', 'G'};
inline constexpr std::uint8_t kPingVersion = 1;

enum class Kind : std::uint8_t { ping = 1, pong = 2, ack3 = 3 };

struct Stamps {
  Kind kind = Kind::ping;
  std::uint64_t seq = 0;
  std::int64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, rtt = 0;
};

// Writes the 64-byte block at `out` (the caller owns the padding after it).
void encode_stamps(std::uint8_t* out, const Stamps& s);

// Reads the block. Errors (protocol): "bad-magic", "version", "bad-kind", "bad-flags",
// "short-payload" (under 64 bytes), "bad-ack3" (an ACK3 with padding).
Result<Stamps> decode_stamps(std::span<const std::uint8_t> payload);

// In-place PING -> PONG: sets kind, t1 and t2, leaves everything else (padding included) as is.
// `payload` must have decoded as a PING.
void turn_into_pong(std::uint8_t* payload, std::int64_t t1, std::int64_t t2);

// The client's figures from a PONG (t3 = when it arrived): raw round trip t3 - t0, the
// responder's turnaround t2 - t1, and the RTT with the turnaround removed.
struct ClientView {
  std::int64_t raw = 0, turnaround = 0, rtt = 0;
};
// a - b, clamped to the int64 range: the stamps come from the peer, and a hostile one must
// not make the arithmetic overflow (undefined behaviour), only its own figures absurd.
inline std::int64_t stamp_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (!__builtin_sub_overflow(a, b, &r)) return r;
  return b < 0 ? INT64_MAX : INT64_MIN;
}

inline ClientView client_view(const Stamps& pong, std::int64_t t3) {
  ClientView v;
  v.raw = stamp_sub(t3, pong.t0);
  v.turnaround = stamp_sub(pong.t2, pong.t1);
  v.rtt = stamp_sub(v.raw, v.turnaround);
  return v;
}

// The responder's own round trip from an ACK3 that arrived at r3 (its clock): pong sent to
// ack3 received, minus the client's turnaround (t4 - t3).
inline std::int64_t responder_rtt(const Stamps& ack3, std::int64_t r3) {
  return stamp_sub(stamp_sub(r3, ack3.t2), stamp_sub(ack3.t4, ack3.t3));
}

}  // namespace dl::ping
