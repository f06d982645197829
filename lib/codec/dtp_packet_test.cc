// Unit tests for the DTP packet codec: round trips of every type, and refusal of every
// malformed field (with the checksum recomputed so that only the field is wrong).
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "lib/base/byte_order.h"
#include "lib/codec/dtp_packet.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

using namespace dl;
using namespace dl::dtp;

namespace {
std::vector<std::uint8_t> buf() { return std::vector<std::uint8_t>(kMaxDatagram); }
std::span<const std::uint8_t> view(const std::vector<std::uint8_t>& b, std::size_t n) { return {b.data(), n}; }
// Re-seals after a test corrupts a field, so the decoder must catch the field itself.
void reseal(std::vector<std::uint8_t>& b, std::size_t n) {
  put_u32(b.data() + 4, 0);
  put_u32(b.data() + 4, static_cast<std::uint32_t>(XXH3_64bits_withSeed(b.data() + 8, n - 8, get_u32(b.data()))));
}
std::string dec(const std::vector<std::uint8_t>& b, std::size_t n) {
  Packet p;
  return decode(view(b, n), p);
}
const std::array<std::uint8_t, 32> kHash = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                            17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
}  // namespace

TEST_CASE("header: magic, version, type, checksum, session id") {
  auto b = buf();
  std::size_t n = encode_keepalive(b.data(), 42, 0);
  CHECK(n == 20);
  CHECK(dec(b, n) == "");
  CHECK(dec(b, 15) == "short");
  auto c = b;
  c[0] = 'X';
  CHECK(dec(c, n) == "bad-magic");
  c = b;
  c[2] = 2;
  CHECK(dec(c, n) == "bad-version");
  c = b;
  c[3] = 0;
  CHECK(dec(c, n) == "bad-type");
  c[3] = 10;
  CHECK(dec(c, n) == "bad-type");
  c = b;
  c[n - 1] ^= 1;
  CHECK(dec(c, n) == "bad-checksum");
  c = b;
  put_u64(c.data() + 8, 0);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-session");
  CHECK(dec(b, n - 1) == "bad-checksum");  // truncation breaks the checksum first
}

TEST_CASE("OPEN round trip and validation") {
  auto b = buf();
  std::size_t n = encode_open(b.data(), 7, 1400, "dir/file.bin");
  Packet p;
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.type == Type::open);
  CHECK(p.session == 7);
  CHECK(p.open.chunk == 1400);
  CHECK(p.open.name == "dir/file.bin");
  auto c = b;
  put_u16(c.data() + 16, 10);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-chunk");
  c = b;
  put_u16(c.data() + 18, 300);  // longer than the datagram
  reseal(c, n);
  CHECK(dec(c, n) == "bad-length");
  c = b;
  c[22] = 0;  // NUL inside the name
  reseal(c, n);
  CHECK(dec(c, n) == "bad-name");
  c = b;
  c[n - 1] = 1;  // the padding must be zero
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  CHECK(n == kMinOpen);  // padded: a reply is never larger than what asked for it
  c = b;
  put_u16(c.data() + 18, 12 + 1);  // a name that would run into the padding
  reseal(c, n);
  CHECK(dec(c, n) == "bad-name");
  CHECK(dec(b, kHeaderSize + 4 + 12) == "bad-checksum");  // unpadded (and so resealed below)
  c = b;
  reseal(c, kHeaderSize + 4 + 12);
  CHECK(dec(c, kHeaderSize + 4 + 12) == "bad-length");
  std::string longest(kMaxName, 'n');
  n = encode_open(b.data(), 7, 1400, longest);
  CHECK(n == kHeaderSize + 4 + kMaxName);  // past the minimum: no padding
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.open.name == longest);
  n = encode_open(b.data(), 7, 1400, "");
  CHECK(dec(b, n) == "bad-name");
}

TEST_CASE("META round trip and validation") {
  auto b = buf();
  std::size_t n = encode_meta(b.data(), 9, 5ull << 32, kHash, 1420, 123456789, 0xC00C1E);
  Packet p;
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.meta.size == 5ull << 32);
  CHECK(std::memcmp(p.meta.sha256.data(), kHash.data(), 32) == 0);
  CHECK(p.meta.chunk == 1420);
  CHECK(p.meta.mtime_ns == 123456789);
  CHECK(p.meta.cookie == 0xC00C1E);
  auto c = b;
  put_u16(c.data() + 58, 1);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  c = b;
  put_u16(c.data() + 56, 0);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-chunk");
  reseal(c, n - 1);
  CHECK(dec(c, n - 1) == "bad-length");
}

TEST_CASE("REQUEST: ranges round trip, split across datagrams, every bad field refused") {
  std::vector<ByteRange> r;
  for (std::uint64_t i = 0; i < 1000; ++i) r.push_back({i * 3000 + (1ull << 32), i * 3000 + 1400 + (1ull << 32)});
  auto b = buf();
  std::size_t next = 0, from = 0;
  std::vector<ByteRange> got;
  int parts = 0;
  while (from < r.size()) {
    std::size_t n = encode_request(b.data(), 1400, 5, 3, static_cast<std::uint16_t>(parts), 8000000, 77, r, from, next);
    CHECK(n <= 1400);
    Packet p;
    REQUIRE(std::string(decode(view(b, n), p)) == "");
    CHECK(p.request.pass == 3);
    CHECK(p.request.part == parts);
    CHECK(p.request.rate_bits == 8000000);
    CHECK(p.request.cookie == 77);
    CHECK(p.request.count == next - from);
    RangeReader rr(p.request);
    ByteRange x;
    while (rr.next(x)) got.push_back(x);
    from = next;
    ++parts;
  }
  CHECK(got == r);
  CHECK(parts > 1);

  std::vector<ByteRange> one = {{100, 200}, {300, 400}};
  std::size_t n = encode_request(b.data(), kMaxDatagram, 5, 1, 0, 0, 9, one, 0, next);
  CHECK(dec(b, n) == "");
  auto c = b;
  put_u32(c.data() + 16, 0);  // pass 0
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  c = b;
  put_u16(c.data() + 20, 1024);  // part out of range
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  c = b;
  put_u16(c.data() + 22, 2);  // an unknown flag
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  n = encode_request(b.data(), kMaxDatagram, 5, 1, 3, 0, 9, one, 0, next, true);
  Packet u;
  REQUIRE(std::string(decode(view(b, n), u)) == "");
  CHECK(u.request.urgent);
  CHECK(u.request.part == 3);
  c = b;
  put_u32(c.data() + 32, 3);  // count larger than the list
  reseal(c, n);
  CHECK(dec(c, n) == "bad-ranges");
  put_u32(c.data() + 32, 1);  // count smaller: trailing bytes
  reseal(c, n);
  CHECK(dec(c, n) == "bad-ranges");
  put_u32(c.data() + 32, 0);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-ranges");
  // A zero-length range; a second range touching the first; an overflowing varint.
  std::uint8_t zero_len[] = {100, 0};
  std::uint8_t touching[] = {100, 100, 0, 5};
  std::uint8_t overflow[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1};
  std::uint8_t wraps[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 2};
  std::uint8_t unterminated[] = {0x80, 0x80};
  struct Case { std::uint8_t* p; std::size_t n; std::uint32_t count; };
  for (Case k : {Case{zero_len, 2, 1}, Case{touching, 4, 2}, Case{overflow, 11, 1},
                 Case{wraps, 11, 1}, Case{unterminated, 2, 1}}) {
    c = b;
    put_u32(c.data() + 32, k.count);
    std::memcpy(c.data() + 44, k.p, k.n);
    reseal(c, 44 + k.n);
    CHECK(dec(c, 44 + k.n) == "bad-ranges");
  }
}

TEST_CASE("DATA round trip and validation") {
  auto b = buf();
  for (std::size_t i = 0; i < 1400; ++i) b[kDataHeaderSize + i] = static_cast<std::uint8_t>(i);
  encode_data_header(b.data(), 11, (1ull << 32) - 700, 99, 2, 1400);
  std::size_t n = kDataHeaderSize + 1400;
  Packet p;
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.data.offset == (1ull << 32) - 700);
  CHECK(p.data.seq == 99);
  CHECK(p.data.pass == 2);
  CHECK(p.data.bytes.size() == 1400);
  CHECK(p.data.bytes[1399] == static_cast<std::uint8_t>(1399));
  auto c = b;
  c[100] ^= 0x10;
  CHECK(dec(c, n) == "bad-checksum");
  reseal(c, kDataHeaderSize);  // no payload byte at all
  CHECK(dec(c, kDataHeaderSize) == "bad-length");
  c = b;
  put_u64(c.data() + 16, UINT64_MAX - 10);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
  c = b;
  put_u32(c.data() + 28, 0);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");
}

TEST_CASE("END, REPORT, STOP, KEEPALIVE, ERROR") {
  auto b = buf();
  Packet p;
  std::size_t n = encode_end(b.data(), 1, 4, 1000, 7);
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.end.pass == 4);
  CHECK(p.end.sent == 1000);
  CHECK(p.end.parts_seen == 7);
  auto c = b;
  put_u32(c.data() + 20, 1);
  reseal(c, n);
  CHECK(dec(c, n) == "bad-field");

  n = encode_report(b.data(), 1, 4, 77, 1ull << 40);
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.report.highest_seq == 77);
  CHECK(p.report.received == 1ull << 40);
  reseal(b, n + 1);
  CHECK(dec(b, n + 1) == "bad-length");

  n = encode_stop(b.data(), 1, StopReason::cancelled);
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.stop.reason == StopReason::cancelled);
  put_u16(b.data() + 16, 9);
  reseal(b, n);
  CHECK(dec(b, n) == "bad-field");

  n = encode_keepalive(b.data(), 1, 1);
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.keepalive.state == 1);
  put_u16(b.data() + 16, 2);
  reseal(b, n);
  CHECK(dec(b, n) == "bad-field");

  n = encode_error(b.data(), 1, ErrorCode::unknown_payload, "no such payload: x");
  REQUIRE(std::string(decode(view(b, n), p)) == "");
  CHECK(p.error.code == ErrorCode::unknown_payload);
  CHECK(p.error.text == "no such payload: x");
  put_u16(b.data() + 16, 0);
  reseal(b, n);
  CHECK(dec(b, n) == "bad-field");
  std::string long_text(2000, 'x');
  n = encode_error(b.data(), 1, ErrorCode::busy, long_text);
  CHECK(n == kHeaderSize + 4 + kMaxError);
  CHECK(dec(b, n) == "");
}
