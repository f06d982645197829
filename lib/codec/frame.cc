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

// Header bytes 0..23 (everything but the checksum).
void put_head(std::uint8_t* out, Type type, std::uint16_t flags, std::size_t length, std::uint64_t seq,
              double timestamp) {
  out[0] = kMarker;
  out[1] = static_cast<std::uint8_t>(type);
  put_u16(out + 2, flags);
  put_u32(out + 4, static_cast<std::uint32_t>(length));
  put_u64(out + 8, seq);
  put_f64(out + 16, timestamp);
}

}  // namespace

void encode(std::uint8_t* out, Type type, std::uint64_t seq, double timestamp,
            std::span<const std::uint8_t> payload, std::uint16_t flags) {
  put_head(out, type, flags, payload.size(), seq, timestamp);
  put_u64(out + 24, checksum(out, payload));
}

void encode_data(std::uint8_t* out, std::uint64_t seq, double timestamp,
                 std::span<const std::uint8_t> payload, Integrity integrity) {
  if (integrity == Integrity::checksum) {
    encode(out, Type::data, seq, timestamp, payload);
    return;
  }
  put_head(out, Type::data, 0, payload.size(), seq, timestamp);
  put_u64(out + 24, 0);
}

void encode_data_header(std::uint8_t* out, std::uint64_t seq, double timestamp, std::uint32_t length,
                        std::uint64_t checksum) {
  put_head(out, Type::data, 0, length, seq, timestamp);
  put_u64(out + 24, checksum);
}

void encode_data_copy(std::uint8_t* out, std::uint64_t seq, double timestamp,
                      std::span<const std::uint8_t> payload, Integrity integrity) {
  put_head(out, Type::data, 0, payload.size(), seq, timestamp);
  if (integrity == Integrity::tls) {
    if (!payload.empty()) std::memcpy(out + kHeaderSize, payload.data(), payload.size());
    put_u64(out + 24, 0);
    return;
  }
  put_u64(out + 24, frame_checksum_copy(out, out + kHeaderSize, payload.data(), payload.size()));
}

Decoded decode(std::span<const std::uint8_t> buf, std::uint32_t max_payload, Integrity integrity) {
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
  std::uint16_t allowed = d.header.type == Type::error ? kFlagRetryable : 0;
  if ((d.header.flags & ~allowed) != 0) {
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
  bool trusted = integrity == Integrity::tls && d.header.type == Type::data;
  if (!trusted && checksum(p, buf.subspan(kHeaderSize, d.header.length)) != d.header.checksum) {
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
  put_u64(out + 24, h.incarnation);
  put_u64(out + 32, h.token);
  put_u64(out + 40, h.recv_next);
  put_u64(out + 48, h.delivered);
  put_u32(out + 56, h.max_message);
  put_u32(out + 60, h.timeout_ms);
  put_u64(out + 64, h.window);
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
                              ", this build speaks " + std::to_string(kVersion) +
                              (h.version < kVersion ? "; upgrade the peer" : "; upgrade this side"),
                          /*retryable=*/false);
  }
  if (payload.size() != kHelloSize) {
    return protocol_error("bad-hello", "", "handshake of " + std::to_string(payload.size()) +
                                               " bytes, expected " + std::to_string(kHelloSize));
  }
  const std::uint8_t* p = payload.data();
  h.flags = get_u16(p + 6);
  h.session_hi = get_u64(p + 8);
  h.session_lo = get_u64(p + 16);
  h.incarnation = get_u64(p + 24);
  h.token = get_u64(p + 32);
  h.recv_next = get_u64(p + 40);
  h.delivered = get_u64(p + 48);
  h.max_message = get_u32(p + 56);
  h.timeout_ms = get_u32(p + 60);
  h.window = get_u64(p + 64);
  if (h.flags != 0) return protocol_error("bad-hello", "", "reserved handshake flags set");
  if (h.session_hi == 0 && h.session_lo == 0) return protocol_error("bad-hello", "", "session id is 0");
  if (h.recv_next == 0) return protocol_error("bad-hello", "", "recv_next is 0");
  if (h.delivered >= h.recv_next) return protocol_error("bad-hello", "", "delivered beyond recv_next");
  if (h.max_message == 0) return protocol_error("bad-hello", "", "max_message is 0");
  if (h.window < kHeaderSize) return protocol_error("bad-hello", "", "window smaller than one frame header");
  return h;
}

void encode_ack(std::uint8_t* out, std::uint64_t window) { put_u64(out, window); }

Result<std::uint64_t> decode_ack(std::span<const std::uint8_t> payload) {
  if (payload.size() != kAckSize) {
    return protocol_error("bad-ack", "", "acknowledgement of " + std::to_string(payload.size()) +
                                             " bytes, expected " + std::to_string(kAckSize));
  }
  return get_u64(payload.data());
}

std::string encode_error_payload(std::string_view id, std::string_view text) {
  std::string s(id);
  s.push_back('\0');
  s.append(text.substr(0, 1024));
  return s;
}

std::string encode_error_frame(std::string_view id, std::string_view text, bool retryable,
                               double timestamp) {
  std::string payload = encode_error_payload(id, text);
  std::string f(kHeaderSize + payload.size(), '\0');
  auto* p = reinterpret_cast<std::uint8_t*>(f.data());
  std::memcpy(p + kHeaderSize, payload.data(), payload.size());
  encode(p, Type::error, 0, timestamp, {p + kHeaderSize, payload.size()},
         retryable ? kFlagRetryable : 0);
  return f;
}

Error decode_error_payload(std::span<const std::uint8_t> payload, std::string_view context,
                           bool retryable) {
  std::string s(reinterpret_cast<const char*>(payload.data()), payload.size());
  auto nul = s.find('\0');
  std::string id = nul == std::string::npos ? "" : s.substr(0, nul);
  std::string text = nul == std::string::npos ? s : s.substr(nul + 1);
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';  // one line, whatever the peer sent
  }
  for (char& c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  if (id.size() > 40) id.resize(40);
  if (id == "peer-stopped" || id == "peer-done") {
    // Not a fault: the peer ended the session on purpose (interrupted, --count reached ...).
    // The text is the peer's own reason, already a sentence: "dlsend was interrupted".
    Error e = make_error(ErrorKind::disconnected, std::string(context), "stopped: " + text);
    e.id = id;
    e.final = true;
    return e;
  }
  if (id == "version" && text.find("upgrade") == std::string::npos) {
    text += "; upgrade the side with the older version";  // a version-1 peer's words
  }
  // Our own words for what the peer refused, never the peer's nested message chain.
  if (retryable) {
    // A temporary refusal (a busy listener, a damaged handshake): like a refused connection,
    // it is retried within --wait/--reconnect and is not the peer breaking the protocol.
    Error e = make_error(ErrorKind::connect, std::string(context),
                         "refused [" + (id.empty() ? std::string("peer-error") : id) + "]: " + text);
    e.id = id;
    return e;
  }
  Error e = protocol_error(id.empty() ? "peer-error" : id, std::string(context), text, false);
  if (id == "session-lost") e.kind = ErrorKind::disconnected;
  return e;
}

}  // namespace dl::frame
