#include "lib/codec/dtp_packet.h"

#include <algorithm>
#include <cstring>

#include "lib/base/byte_order.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dl::dtp {

namespace {

std::uint32_t checksum_of(const std::uint8_t* p, std::size_t n) {
  return static_cast<std::uint32_t>(XXH3_64bits_withSeed(p + 8, n - 8, get_u32(p)));
}

std::uint8_t* header(std::uint8_t* out, Type type, std::uint64_t session) {
  out[0] = 'D';
  out[1] = 'T';
  out[2] = kVersion;
  out[3] = static_cast<std::uint8_t>(type);
  put_u32(out + 4, 0);
  put_u64(out + 8, session);
  return out + kHeaderSize;
}

std::size_t seal(std::uint8_t* out, std::size_t n) {
  put_u32(out + 4, checksum_of(out, n));
  return n;
}

std::size_t put_varint(std::uint8_t* p, std::uint64_t v) {
  std::size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<std::uint8_t>(v | 0x80);
    v >>= 7;
  }
  p[n++] = static_cast<std::uint8_t>(v);
  return n;
}

// Reads one LEB128 varint of at most 10 bytes that fits 64 bits; false when malformed.
bool get_varint(const std::uint8_t*& p, const std::uint8_t* end, std::uint64_t& v) {
  v = 0;
  for (int i = 0; i < 10; ++i) {
    if (p == end) return false;
    std::uint8_t b = *p++;
    if (i == 9 && b > 1) return false;  // would overflow 64 bits
    v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) return true;
  }
  return false;
}

}  // namespace

const char* decode(std::span<const std::uint8_t> d, Packet& out) {
  const std::uint8_t* p = d.data();
  std::size_t n = d.size();
  if (n < kHeaderSize) return "short";
  if (p[0] != 'D' || p[1] != 'T') return "bad-magic";
  if (p[2] != kVersion) return "bad-version";
  if (p[3] < 1 || p[3] > 9) return "bad-type";
  if (get_u32(p + 4) != checksum_of(p, n)) return "bad-checksum";
  out.type = static_cast<Type>(p[3]);
  out.session = get_u64(p + 8);
  if (out.session == 0) return "bad-session";
  const std::uint8_t* b = p + kHeaderSize;
  std::size_t len = n - kHeaderSize;
  switch (out.type) {
    case Type::open: {
      if (len < 4) return "bad-length";
      out.open.chunk = get_u16(b);
      std::uint16_t nl = get_u16(b + 2);
      if (len != std::max<std::size_t>(4u + nl, kMinOpen - kHeaderSize)) return "bad-length";
      if (out.open.chunk < kMinChunk || out.open.chunk > kMaxChunk) return "bad-chunk";
      if (nl == 0 || nl > kMaxName || std::memchr(b + 4, 0, nl)) return "bad-name";
      for (std::size_t i = 4u + nl; i < len; ++i) {
        if (b[i] != 0) return "bad-field";  // the padding
      }
      out.open.name = {reinterpret_cast<const char*>(b + 4), nl};
      return "";
    }
    case Type::meta: {
      if (len != 60) return "bad-length";
      out.meta.size = get_u64(b);
      out.meta.sha256 = std::span<const std::uint8_t, 32>(b + 8, 32);
      out.meta.chunk = get_u16(b + 40);
      if (get_u16(b + 42) != 0) return "bad-field";
      out.meta.mtime_ns = get_u64(b + 44);
      out.meta.cookie = get_u64(b + 52);
      if (out.meta.chunk < kMinChunk || out.meta.chunk > kMaxChunk) return "bad-chunk";
      return "";
    }
    case Type::request: {
      if (len < 28) return "bad-length";
      Request& r = out.request;
      r.pass = get_u32(b);
      r.part = get_u16(b + 4);
      std::uint16_t flags = get_u16(b + 6);
      if (flags & ~1u) return "bad-field";
      r.urgent = flags & 1u;
      r.rate_bits = get_u64(b + 8);
      r.count = get_u32(b + 16);
      r.cookie = get_u64(b + 20);
      if (r.pass == 0 || r.part >= kMaxParts) return "bad-field";
      if (r.count == 0) return "bad-ranges";
      r.ranges = {b + 28, len - 28};
      // Validate the whole list now so that readers never meet a bad pair.
      const std::uint8_t* q = b + 28;
      const std::uint8_t* e = p + n;
      std::uint64_t prev_end = 0;
      for (std::uint32_t i = 0; i < r.count; ++i) {
        std::uint64_t gap, size;
        if (!get_varint(q, e, gap) || !get_varint(q, e, size)) return "bad-ranges";
        if (size == 0) return "bad-ranges";
        if (i > 0 && gap == 0) return "bad-ranges";  // touching ranges must be one range
        if (gap > UINT64_MAX - prev_end) return "bad-ranges";
        std::uint64_t start = prev_end + gap;
        if (size > UINT64_MAX - start) return "bad-ranges";
        prev_end = start + size;
      }
      if (q != e) return "bad-ranges";
      return "";
    }
    case Type::data: {
      if (len < 17) return "bad-length";
      Data& x = out.data;
      x.offset = get_u64(b);
      x.seq = get_u32(b + 8);
      x.pass = get_u32(b + 12);
      x.bytes = {b + 16, len - 16};
      if (x.bytes.size() > kMaxChunk) return "bad-length";
      if (x.offset > UINT64_MAX - x.bytes.size()) return "bad-field";
      if (x.pass == 0) return "bad-field";
      return "";
    }
    case Type::end:
      if (len != 24) return "bad-length";
      out.end.pass = get_u32(b);
      if (get_u32(b + 4) != 0 || out.end.pass == 0) return "bad-field";
      out.end.sent = get_u64(b + 8);
      out.end.parts_seen = get_u64(b + 16);
      return "";
    case Type::report:
      if (len != 16) return "bad-length";
      out.report.pass = get_u32(b);
      out.report.highest_seq = get_u32(b + 4);
      out.report.received = get_u64(b + 8);
      return "";
    case Type::stop: {
      if (len != 4) return "bad-length";
      std::uint16_t r = get_u16(b);
      if (r > 3 || get_u16(b + 2) != 0) return "bad-field";
      out.stop.reason = static_cast<StopReason>(r);
      return "";
    }
    case Type::keepalive:
      if (len != 4) return "bad-length";
      out.keepalive.state = get_u16(b);
      if (out.keepalive.state > 1 || get_u16(b + 2) != 0) return "bad-field";
      return "";
    case Type::error: {
      if (len < 4) return "bad-length";
      std::uint16_t c = get_u16(b);
      std::uint16_t tl = get_u16(b + 2);
      if (len != 4u + tl) return "bad-length";
      if (c < 1 || c > 4 || tl > kMaxError) return "bad-field";
      out.error.code = static_cast<ErrorCode>(c);
      out.error.text = {reinterpret_cast<const char*>(b + 4), tl};
      return "";
    }
  }
  return "bad-type";
}

std::size_t encode_open(std::uint8_t* out, std::uint64_t session, std::uint16_t chunk, std::string_view name) {
  std::uint8_t* b = header(out, Type::open, session);
  put_u16(b, chunk);
  put_u16(b + 2, static_cast<std::uint16_t>(name.size()));
  std::memcpy(b + 4, name.data(), name.size());
  std::size_t len = std::max(kHeaderSize + 4 + name.size(), kMinOpen);
  std::memset(b + 4 + name.size(), 0, len - (kHeaderSize + 4 + name.size()));
  return seal(out, len);
}

std::size_t encode_meta(std::uint8_t* out, std::uint64_t session, std::uint64_t size,
                        std::span<const std::uint8_t, 32> sha256, std::uint16_t chunk, std::uint64_t mtime_ns,
                        std::uint64_t cookie) {
  std::uint8_t* b = header(out, Type::meta, session);
  put_u64(b, size);
  std::memcpy(b + 8, sha256.data(), 32);
  put_u16(b + 40, chunk);
  put_u16(b + 42, 0);
  put_u64(b + 44, mtime_ns);
  put_u64(b + 52, cookie);
  return seal(out, kHeaderSize + 60);
}

std::size_t encode_request(std::uint8_t* out, std::size_t max_len, std::uint64_t session,
                           std::uint32_t pass, std::uint16_t part, std::uint64_t rate_bits,
                           std::uint64_t cookie, std::span<const ByteRange> ranges, std::size_t from,
                           std::size_t& next, bool urgent) {
  std::uint8_t* b = header(out, Type::request, session);
  put_u32(b, pass);
  put_u16(b + 4, part);
  put_u16(b + 6, urgent ? 1 : 0);
  put_u64(b + 8, rate_bits);
  put_u64(b + 20, cookie);
  std::size_t at = kHeaderSize + 28;
  std::uint64_t prev_end = 0;
  std::uint32_t count = 0;
  std::size_t i = from;
  for (; i < ranges.size(); ++i) {
    if (at + 20 > max_len) break;  // two varints take at most 20 bytes
    at += put_varint(out + at, ranges[i].start - prev_end);
    at += put_varint(out + at, ranges[i].end - ranges[i].start);
    prev_end = ranges[i].end;
    ++count;
  }
  put_u32(b + 16, count);
  next = i;
  return seal(out, at);
}

void encode_data_header(std::uint8_t* out, std::uint64_t session, std::uint64_t offset,
                        std::uint32_t seq, std::uint32_t pass, std::size_t n) {
  std::uint8_t* b = header(out, Type::data, session);
  put_u64(b, offset);
  put_u32(b + 8, seq);
  put_u32(b + 12, pass);
  seal(out, kDataHeaderSize + n);
}

std::size_t encode_end(std::uint8_t* out, std::uint64_t session, std::uint32_t pass,
                       std::uint64_t sent, std::uint64_t parts_seen) {
  std::uint8_t* b = header(out, Type::end, session);
  put_u32(b, pass);
  put_u32(b + 4, 0);
  put_u64(b + 8, sent);
  put_u64(b + 16, parts_seen);
  return seal(out, kHeaderSize + 24);
}

std::size_t encode_report(std::uint8_t* out, std::uint64_t session, std::uint32_t pass,
                          std::uint32_t highest_seq, std::uint64_t received) {
  std::uint8_t* b = header(out, Type::report, session);
  put_u32(b, pass);
  put_u32(b + 4, highest_seq);
  put_u64(b + 8, received);
  return seal(out, kHeaderSize + 16);
}

std::size_t encode_stop(std::uint8_t* out, std::uint64_t session, StopReason reason) {
  std::uint8_t* b = header(out, Type::stop, session);
  put_u16(b, static_cast<std::uint16_t>(reason));
  put_u16(b + 2, 0);
  return seal(out, kHeaderSize + 4);
}

std::size_t encode_keepalive(std::uint8_t* out, std::uint64_t session, std::uint16_t state) {
  std::uint8_t* b = header(out, Type::keepalive, session);
  put_u16(b, state);
  put_u16(b + 2, 0);
  return seal(out, kHeaderSize + 4);
}

std::size_t encode_error(std::uint8_t* out, std::uint64_t session, ErrorCode code, std::string_view text) {
  if (text.size() > kMaxError) text = text.substr(0, kMaxError);
  std::uint8_t* b = header(out, Type::error, session);
  put_u16(b, static_cast<std::uint16_t>(code));
  put_u16(b + 2, static_cast<std::uint16_t>(text.size()));
  std::memcpy(b + 4, text.data(), text.size());
  return seal(out, kHeaderSize + 4 + text.size());
}

bool RangeReader::next(ByteRange& out) {
  if (p_ == end_) return false;
  std::uint64_t gap, size;
  if (!get_varint(p_, end_, gap) || !get_varint(p_, end_, size)) return false;
  out.start = prev_end_ + gap;
  out.end = out.start + size;
  prev_end_ = out.end;
  return true;
}

std::string_view type_name(Type t) {
  switch (t) {
    case Type::open: return "OPEN";
    case Type::meta: return "META";
    case Type::request: return "REQUEST";
    case Type::data: return "DATA";
    case Type::end: return "END";
    case Type::report: return "REPORT";
    case Type::stop: return "STOP";
    case Type::keepalive: return "KEEPALIVE";
    case Type::error: return "ERROR";
  }
  return "?";
}

std::string_view error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::unknown_payload: return "unknown payload";
    case ErrorCode::bad_request: return "bad request";
    case ErrorCode::busy: return "busy";
    case ErrorCode::io: return "server I/O error";
  }
  return "error";
}

}  // namespace dl::dtp
