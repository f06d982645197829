#include "lib/codec/ping_payload.h"

#include <cstring>

#include "lib/base/byte_order.h"

namespace dl::ping {

void encode_stamps(std::uint8_t* out, const Stamps& s) {
  std::memcpy(out, kPingMagic, 4);
  out[4] = kPingVersion;
  out[5] = static_cast<std::uint8_t>(s.kind);
  put_u16(out + 6, 0);
  put_u64(out + 8, s.seq);
  put_u64(out + 16, static_cast<std::uint64_t>(s.t0));
  put_u64(out + 24, static_cast<std::uint64_t>(s.t1));
  put_u64(out + 32, static_cast<std::uint64_t>(s.t2));
  put_u64(out + 40, static_cast<std::uint64_t>(s.t3));
  put_u64(out + 48, static_cast<std::uint64_t>(s.t4));
  put_u64(out + 56, static_cast<std::uint64_t>(s.rtt));
}

Result<Stamps> decode_stamps(std::span<const std::uint8_t> payload) {
  const char* ctx = "ping payload";
  if (payload.size() < kPayloadHeader)
    return protocol_error("short-payload", ctx, "a dlping payload has at least 64 bytes", false);
  const std::uint8_t* p = payload.data();
  if (std::memcmp(p, kPingMagic, 4) != 0)
    return protocol_error("bad-magic", ctx, "not a dlping payload (no DLPG)", false);
  if (p[4] != kPingVersion)
    return protocol_error("version", ctx, "dlping payload version " + std::to_string(p[4]) + ", expected 1", false);
  if (p[5] < 1 || p[5] > 3) return protocol_error("bad-kind", ctx, "unknown kind " + std::to_string(p[5]), false);
  if (get_u16(p + 6) != 0) return protocol_error("bad-flags", ctx, "flags must be 0", false);
  Stamps s;
  s.kind = static_cast<Kind>(p[5]);
  if (s.kind == Kind::ack3 && payload.size() != kPayloadHeader)
    return protocol_error("bad-ack3", ctx, "an ACK3 is exactly 64 bytes", false);
  s.seq = get_u64(p + 8);
  s.t0 = static_cast<std::int64_t>(get_u64(p + 16));
  s.t1 = static_cast<std::int64_t>(get_u64(p + 24));
  s.t2 = static_cast<std::int64_t>(get_u64(p + 32));
  s.t3 = static_cast<std::int64_t>(get_u64(p + 40));
  s.t4 = static_cast<std::int64_t>(get_u64(p + 48));
  s.rtt = static_cast<std::int64_t>(get_u64(p + 56));
  return s;
}

void turn_into_pong(std::uint8_t* p, std::int64_t t1, std::int64_t t2) {
  p[5] = static_cast<std::uint8_t>(Kind::pong);
  put_u64(p + 24, static_cast<std::uint64_t>(t1));
  put_u64(p + 32, static_cast<std::uint64_t>(t2));
}

}  // namespace dl::ping
