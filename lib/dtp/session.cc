#include "lib/dtp/session.h"

#include <algorithm>
#include <cstring>

#include "lib/base/atomic_file.h"
#include "lib/base/byte_order.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dl::dtp {

namespace {

constexpr std::uint8_t kMagic[8] = {'D', 'T', 'P', 'S', 'E', 'S', 'S', 0};
constexpr std::size_t kFixed = 8 + 2 + 2 + 8 + 32 + 4 + 2 + 2 + 4;  // through the path lengths
constexpr std::size_t kMaxFile = 1ull << 31;  // a session with 100M holes is still under this

class Writer {
 public:
  void raw(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  void u16(std::uint16_t v) { std::uint8_t b[2]; put_u16(b, v); raw(b, 2); }
  void u32(std::uint32_t v) { std::uint8_t b[4]; put_u32(b, v); raw(b, 4); }
  void u64(std::uint64_t v) { std::uint8_t b[8]; put_u64(b, v); raw(b, 8); }
  void ranges(const RangeSet& r) {
    u64(r.count());
    for (const auto& x : r.ranges()) {
      u64(x.start);
      u64(x.end);
    }
  }
  std::vector<std::uint8_t> out;
};

Error corrupt(std::string detail) {
  return protocol_error("bad-session-file", "session file", std::move(detail), false);
}

}  // namespace

std::uint64_t fragment_limit(std::uint64_t size, std::uint32_t chunk, std::size_t wanted_ranges,
                             std::size_t resumed_ranges) {
  // Ranges of a chunk at least, a byte apart at least; the slack is 64 per REQUEST part of a pass.
  constexpr std::uint64_t kSlack = 65536;
  std::uint64_t per_chunk = size / std::max<std::uint32_t>(chunk, 1);
  std::uint64_t more = 1 + static_cast<std::uint64_t>(wanted_ranges) + resumed_ranges + kSlack;
  return per_chunk > UINT64_MAX - more ? UINT64_MAX : per_chunk + more;
}

std::vector<std::uint8_t> encode_session(const SessionState& s) {
  Writer w;
  w.raw(kMagic, 8);
  w.u16(kSessionVersion);
  w.u16(0);  // flags
  w.u64(s.size);
  w.raw(s.sha256.data(), 32);
  w.u32(s.chunk);
  w.u16(static_cast<std::uint16_t>(s.server.size()));
  w.u16(static_cast<std::uint16_t>(s.name.size()));
  w.u32(static_cast<std::uint32_t>(s.output.size()));
  w.raw(s.server.data(), s.server.size());
  w.raw(s.name.data(), s.name.size());
  w.raw(s.output.data(), s.output.size());
  w.ranges(s.wanted);
  w.ranges(s.received);
  w.u64(s.received.total());
  w.u64(XXH3_64bits(w.out.data(), w.out.size()));
  return std::move(w.out);
}

Result<SessionState> decode_session(std::span<const std::uint8_t> b) {
  if (b.size() < 8 || std::memcmp(b.data(), kMagic, 8) != 0) return corrupt("not a DTP session file");
  if (b.size() < kFixed + 8 + 8 + 8 + 8) return corrupt("truncated");
  std::uint16_t version = get_u16(b.data() + 8);
  if (version != kSessionVersion) {
    return corrupt("version " + std::to_string(version) + " (this dtpget reads version 1)");
  }
  std::size_t body = b.size() - 8;
  if (get_u64(b.data() + body) != XXH3_64bits(b.data(), body)) return corrupt("checksum mismatch (damaged file)");
  if (get_u16(b.data() + 10) != 0) return corrupt("unknown flags");
  SessionState s;
  const std::uint8_t* p = b.data() + 12;
  const std::uint8_t* end = b.data() + body;
  s.size = get_u64(p);
  std::memcpy(s.sha256.data(), p + 8, 32);
  s.chunk = get_u32(p + 40);
  std::size_t ls = get_u16(p + 44), ln = get_u16(p + 46), lo = get_u32(p + 48);
  p += 52;
  if (static_cast<std::size_t>(end - p) < ls + ln + lo) return corrupt("truncated names");
  s.server.assign(reinterpret_cast<const char*>(p), ls);
  p += ls;
  s.name.assign(reinterpret_cast<const char*>(p), ln);
  p += ln;
  s.output.assign(reinterpret_cast<const char*>(p), lo);
  p += lo;
  if (s.server.empty() || s.name.empty() || s.output.empty()) return corrupt("empty server, name or output");
  if (s.chunk == 0) return corrupt("chunk size 0");
  for (RangeSet* set : {&s.wanted, &s.received}) {
    if (end - p < 8) return corrupt("truncated ranges");
    std::uint64_t n = get_u64(p);
    p += 8;
    if (n > static_cast<std::uint64_t>(end - p) / 16) return corrupt("range count beyond the file");
    std::uint64_t prev_end = 0;
    for (std::uint64_t i = 0; i < n; ++i, p += 16) {
      std::uint64_t a = get_u64(p), z = get_u64(p + 8);
      if (a >= z || z > s.size || (i > 0 && a <= prev_end)) return corrupt("ranges out of order or beyond the payload");
      prev_end = z;
      set->add(a, z);
    }
  }
  if (end - p != 8) return corrupt("trailing bytes");
  if (get_u64(p) != s.received.total()) return corrupt("received byte count does not match its ranges");
  return s;
}

Status save_session(const std::string& path, const SessionState& s, bool durable) {
  auto bytes = encode_session(s);
  return write_file_atomically(path, bytes, "--session", durable);
}

Result<SessionState> load_session(const std::string& path) {
  auto text = read_small_file(path, kMaxFile, "session");
  if (!text) return text.error();
  auto s = decode_session({reinterpret_cast<const std::uint8_t*>(text->data()), text->size()});
  if (!s) {
    Error e = s.error();
    e.context = "session " + path;
    return e;
  }
  return s;
}

}  // namespace dl::dtp
