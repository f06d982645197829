#include "lib/codec/frame.h"

#include <bit>
#include <cstring>

#include "lib/codec/checksum.h"

namespace dl::frame {


namespace {

std::uint64_t checksum(const std::uint8_t* header, std::span<const std::uint8_t> payload) {
  return frame_checksum(header, payload.data(), payload.size());
}

bool known_type(std::uint8_t t) { return t >= 1 && t <= 6; }

}  // namespace

void encode(std::uint8_t* out, Type type, std::uint64_t seq, double timestamp,
            std::span<const std::uint8_t> payload) {
  out[0] = kMarker;
  out[1] = static_cast<std::uint8_t>(type);
  put_u16(out + 2, 0);
  put_u32(out + 4, static_cast<std::uint32_t>(payload.size()));
  put_u64(out + 8, seq);
  put_f64(out + 16, timestamp);
  put_u64(out + 24, checksum(out, payload));
}

Decoded decode(std::span<const std::uint8_t> buf, std::uint32_t max_payload) {
  Decoded d;
  const std::uint8_t* p = buf.data();
  // Judge what is already there, so garbage is refused without waiting for 32 bytes.
  if (buf.empty()) {
    d.needed = kHeaderSize;
    return d;
  }
  if (p[0] != kMarker) {
    d.status = Status::bad;
    d.id = "bad-marker";
    return d;
  }
  if (buf.size() >= 2 && !known_type(p[1])) {
    d.status = Status::bad;
    d.id = "bad-type";
    return d;
  }
  if (buf.size() < kHeaderSize) {
    d.needed = kHeaderSize;
    return d;
  }
  d.header.type = static_cast<Type>(p[1]);
  d.header.flags = get_u16(p + 2);
  d.header.length = get_u32(p + 4);
  d.header.seq = get_u64(p + 8);
  d.header.timestamp = get_f64(p + 16);
  d.header.checksum = get_u64(p + 24);
  d.announced = d.header.length;
  if (d.header.flags != 0) {
    d.status = Status::bad;
    d.id = "bad-flags";
    return d;
  }
  if (d.header.length > max_payload || d.header.length > kHardMaxPayload) {
    d.status = Status::bad;
    d.id = "too-large";
    return d;
  }
  std::size_t total = kHeaderSize + d.header.length;
  if (buf.size() < total) {
    d.needed = total;
    return d;
  }
  if (checksum(p, buf.subspan(kHeaderSize, d.header.length)) != d.header.checksum) {
    d.status = Status::bad;
    d.id = "bad-checksum";
    return d;
  }
  d.status = Status::frame;
  d.frame_size = total;
  return d;
}

Error decode_error(const Decoded& d, std::uint32_t max_payload, std::string_view context) {
  std::string detail;
  std::string_view id = d.id;
  if (id == "bad-marker") detail = "not a frame start (garbage on the connection?)";
  else if (id == "bad-type") detail = "unknown frame type";
  else if (id == "bad-flags") detail = "reserved flags set";
  else if (id == "too-large") {
    detail = "frame of " + std::to_string(d.announced) + " bytes exceeds the limit of " +
             std::to_string(max_payload) + " bytes (--max-message)";
  } else if (id == "bad-checksum") {
    detail = "frame checksum mismatch (seq " + std::to_string(d.header.seq) + ")";
  }
  return protocol_error(std::string(id), std::string(context), detail);
}

void encode_hello(std::uint8_t* out, const Hello& h) {
  std::memcpy(out, kHelloMagic, 4);
  put_u16(out + 4, h.version);
  put_u16(out + 6, h.flags);
  put_u64(out + 8, h.session_hi);
  put_u64(out + 16, h.session_lo);
  put_u64(out + 24, h.recv_next);
  put_u32(out + 32, h.max_message);
  put_u32(out + 36, h.timeout_ms);
  put_u64(out + 40, h.delivered);
}

Result<Hello> decode_hello(std::span<const std::uint8_t> payload) {
  if (payload.size() < 6 || std::memcmp(payload.data(), kHelloMagic, 4) != 0) {
    return protocol_error("bad-magic", "", "handshake does not start with \"DLNK\"");
  }
  Hello h;
  h.version = get_u16(payload.data() + 4);
  if (h.version != kVersion) {
    return protocol_error("version", "",
                          "peer speaks protocol version " + std::to_string(h.version) +
                              ", this build speaks " + std::to_string(kVersion),
                          /*retryable=*/false);
  }
  if (payload.size() < kHelloSize) {
    return protocol_error("bad-hello", "", "handshake of " + std::to_string(payload.size()) +
                                               " bytes, expected " + std::to_string(kHelloSize));
  }
  const std::uint8_t* p = payload.data();
  h.flags = get_u16(p + 6);
  h.session_hi = get_u64(p + 8);
  h.session_lo = get_u64(p + 16);
  h.recv_next = get_u64(p + 24);
  h.max_message = get_u32(p + 32);
  h.timeout_ms = get_u32(p + 36);
  h.delivered = get_u64(p + 40);
  if (h.recv_next == 0) return protocol_error("bad-hello", "", "recv_next is 0");
  if (h.delivered >= h.recv_next) return protocol_error("bad-hello", "", "delivered beyond recv_next");
  return h;
}

std::string encode_error_payload(std::string_view id, std::string_view text) {
  std::string s(id);
  s.push_back('\0');
  s.append(text.substr(0, 1024));
  return s;
}

Error decode_error_payload(std::span<const std::uint8_t> payload, std::string_view context) {
  std::string s(reinterpret_cast<const char*>(payload.data()), payload.size());
  auto nul = s.find('\0');
  std::string id = nul == std::string::npos ? "" : s.substr(0, nul);
  std::string text = nul == std::string::npos ? s : s.substr(nul + 1);
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';  // one line, whatever the peer sent
  }
  if (id == "peer-stopped") {
    // Not a fault: the peer ended the session on purpose (interrupted, --count reached ...).
    Error e = make_error(ErrorKind::disconnected, "peer " + std::string(context.substr(context.find(' ') + 1)),
                         "stopped: " + text);
    e.id = id;
    e.final = true;
    return e;
  }
  Error e = protocol_error("peer-error", std::string(context), "peer says: " + text, /*retryable=*/false);
  if (id == "session-busy" || id == "session-lost" || id == "version") e.id = id;
  return e;
}

}  // namespace dl::frame
