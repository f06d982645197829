#include "classic_codec.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <string_view>
#include <vector>

// Counting replacements of the global allocator, so tests can prove decode() never allocates
// (an implementation that buffered an announced 2^62-byte payload would show up here, or abort).
namespace {
std::size_t g_allocations = 0;
}  // namespace

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using dl::classic::decode;
using dl::classic::Decoded;
using dl::classic::DecodeStatus;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kMax = 1 << 20;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes frame(std::string_view payload, double ts) {
  Bytes out;
  dl::classic::append_frame(out, bytes_of(payload), ts);
  return out;
}

Bytes from_hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

Bytes read_golden(const std::string& name) {
  // Bazel runs cc_test from the workspace's runfiles root, where //testdata:classic lands.
  std::ifstream in("testdata/classic/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open testdata/classic/" << name);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string payload_of(const Bytes& buf, std::size_t at, const Decoded& d) {
  return std::string(buf.begin() + static_cast<std::ptrdiff_t>(at + d.payload_offset),
                     buf.begin() + static_cast<std::ptrdiff_t>(at + d.payload_offset + d.payload_size));
}

struct Frame {
  std::string payload;
  double timestamp;
};

// What a stream reader does with the codec: decode, skip garbage, stop when more bytes are needed.
struct Scan {
  std::vector<Frame> frames;
  std::size_t skipped = 0;
  std::vector<std::string> reasons;
  std::size_t leftover = 0;
  Bytes rebuilt;  // skipped bytes verbatim + every frame re-encoded: must equal the input.
};

Scan scan(const Bytes& buf, std::uint64_t max_payload = kMax) {
  Scan s;
  std::size_t at = 0;
  while (true) {
    const auto rest = std::span(buf).subspan(at);
    const Decoded d = decode(rest, max_payload);
    if (d.status == DecodeStatus::need_more) {
      REQUIRE(d.needed > rest.size());
      s.leftover = rest.size();
      return s;
    }
    REQUIRE(d.consumed >= 1);
    REQUIRE(d.consumed <= rest.size());
    if (d.status == DecodeStatus::frame) {
      s.frames.push_back({payload_of(buf, at, d), d.timestamp});
      dl::classic::append_frame(
          s.rebuilt, rest.subspan(d.payload_offset, d.payload_size), d.timestamp);
    } else {
      s.skipped += d.consumed;
      s.reasons.emplace_back(d.reason);
      s.rebuilt.insert(s.rebuilt.end(), rest.begin(),
                       rest.begin() + static_cast<std::ptrdiff_t>(d.consumed));
    }
    at += d.consumed;
  }
}

// Header with arbitrary raw length bytes, for lengths the encoder would never produce.
Bytes header_with_length(std::int64_t length, double ts) {
  Bytes out(dl::classic::kHeaderSize);
  dl::classic::encode_header(out.data(), static_cast<std::uint64_t>(length), ts);
  return out;
}

}  // namespace

TEST_CASE("constants match the notes") {
  CHECK(dl::classic::kHeaderSize + dl::classic::kFooterSize == dl::classic::kOverhead);
  CHECK(dl::classic::kOverhead == 31);
}

TEST_CASE("worked example encodes to the 34 bytes of the notes and decodes back") {
  const Bytes expected =
      from_hex("2020202020" "0300000000000000" "cdcccccccc" "dc5e40" "2121212121" "414243"
               "2222222222");
  REQUIRE(expected.size() == 34);
  const Bytes encoded = frame("ABC", 123.45);
  CHECK(encoded == expected);

  const Decoded d = decode(encoded, kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(d.consumed == 34);
  CHECK(d.payload_offset == 26);
  CHECK(d.payload_size == 3);
  CHECK(d.timestamp == 123.45);
  CHECK(payload_of(encoded, 0, d) == "ABC");
}

TEST_CASE("encode_header and encode_footer write the documented layout") {
  std::uint8_t header[dl::classic::kHeaderSize];
  dl::classic::encode_header(header, 3, 123.45);
  CHECK(Bytes(header, header + sizeof header) ==
        from_hex("2020202020" "0300000000000000" "cdccccccccdc5e40" "2121212121"));
  std::uint8_t footer[dl::classic::kFooterSize];
  dl::classic::encode_footer(footer);
  CHECK(Bytes(footer, footer + sizeof footer) == from_hex("2222222222"));
}

TEST_CASE("append_frame appends without disturbing existing bytes") {
  Bytes out = bytes_of("xy");
  dl::classic::append_frame(out, bytes_of("ABC"), 123.45);
  REQUIRE(out.size() == 2 + 34);
  CHECK(out[0] == 'x');
  CHECK(out[1] == 'y');
  CHECK(Bytes(out.begin() + 2, out.end()) == frame("ABC", 123.45));
}

TEST_CASE("keepalive is an empty frame with timestamp 1.0") {
  const Bytes k = frame("", dl::classic::kKeepaliveTimestamp);
  REQUIRE(k.size() == 31);
  CHECK(k == from_hex("2020202020" "0000000000000000" "000000000000f03f" "2121212121"
                      "2222222222"));
  const Decoded d = decode(k, kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(d.consumed == 31);
  CHECK(d.payload_size == 0);
  CHECK(d.timestamp == 1.0);
}

TEST_CASE("empty frame with a non-keepalive timestamp decodes") {
  const Bytes e = frame("", 0.0);
  const Decoded d = decode(e, kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(d.consumed == 31);
  CHECK(d.payload_size == 0);
  CHECK(d.timestamp == 0.0);
}

TEST_CASE("negative timestamp frame is decoded: dropping it is policy, not codec") {
  const Bytes f = frame("lost in the seed", -1.0);
  const Decoded d = decode(f, kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(d.timestamp == -1.0);
  CHECK(payload_of(f, 0, d) == "lost in the seed");
}

TEST_CASE("a frame fed one byte at a time asks for exactly what it needs") {
  const Bytes f = frame("ABC", 123.45);
  for (std::size_t n = 0; n < f.size(); ++n) {
    CAPTURE(n);
    const Decoded d = decode(std::span(f).first(n), kMax);
    REQUIRE(d.status == DecodeStatus::need_more);
    CHECK(d.consumed == 0);
    CHECK(d.needed == (n < 26 ? 26u : 34u));
  }
  const Decoded d = decode(f, kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(d.consumed == 34);
}

TEST_CASE("two frames in one buffer") {
  Bytes buf = frame("first", 10.0);
  const Bytes second = frame("second frame", 20.0);
  buf.insert(buf.end(), second.begin(), second.end());

  const Decoded a = decode(buf, kMax);
  REQUIRE(a.status == DecodeStatus::frame);
  CHECK(a.consumed == 36);
  CHECK(payload_of(buf, 0, a) == "first");
  const Decoded b = decode(std::span(buf).subspan(a.consumed), kMax);
  REQUIRE(b.status == DecodeStatus::frame);
  CHECK(b.consumed == 43);
  CHECK(payload_of(buf, a.consumed, b) == "second frame");
  CHECK(b.timestamp == 20.0);
  CHECK(a.consumed + b.consumed == buf.size());
}

TEST_CASE("garbage before a valid frame is skipped and the frame is found") {
  Bytes buf = bytes_of("GARBAGE");
  const Bytes f = frame("payload", 5.0);
  buf.insert(buf.end(), f.begin(), f.end());

  const Decoded g = decode(buf, kMax);
  REQUIRE(g.status == DecodeStatus::garbage);
  CHECK(std::string_view(g.reason) == "bad-start");
  CHECK(g.consumed == 7);  // straight to the next 0x20

  const Scan s = scan(buf);
  CHECK(s.skipped == 7);
  REQUIRE(s.frames.size() == 1);
  CHECK(s.frames[0].payload == "payload");
  CHECK(s.frames[0].timestamp == 5.0);
  CHECK(s.leftover == 0);
}

TEST_CASE("garbage containing 0x20 bytes still resynchronises") {
  Bytes buf = bytes_of("a b  c   d    e");  // runs of up to four spaces: never a start marker
  const Bytes f = frame("x", 1.5);
  buf.insert(buf.end(), f.begin(), f.end());
  const Scan s = scan(buf);
  CHECK(s.skipped == 15);
  REQUIRE(s.frames.size() == 1);
  CHECK(s.frames[0].payload == "x");
  CHECK(s.rebuilt == buf);
}

TEST_CASE("bad start is reported before a full header has arrived") {
  const Bytes one = bytes_of("Z");
  const Decoded a = decode(one, kMax);
  CHECK(a.status == DecodeStatus::garbage);
  CHECK(a.consumed == 1);
  CHECK(std::string_view(a.reason) == "bad-start");

  const Bytes partial = from_hex("2020412020");  // 3rd byte breaks the marker
  const Decoded b = decode(partial, kMax);
  CHECK(b.status == DecodeStatus::garbage);
  CHECK(b.consumed == 1);  // next 0x20 at index >= 1

  const Bytes no_space = bytes_of("xyz");
  const Decoded c = decode(no_space, kMax);
  CHECK(c.status == DecodeStatus::garbage);
  CHECK(c.consumed == 3);  // nothing worth keeping

  const Bytes spaces = from_hex("20202020");
  const Decoded d = decode(spaces, kMax);
  CHECK(d.status == DecodeStatus::need_more);
  CHECK(d.needed == 26);
}

TEST_CASE("a run of six 0x20 before a frame costs one byte") {
  Bytes buf = {0x20};
  const Bytes f = frame("after a space", 7.0);
  buf.insert(buf.end(), f.begin(), f.end());

  const Decoded g = decode(buf, kMax);
  REQUIRE(g.status == DecodeStatus::garbage);
  CHECK(std::string_view(g.reason) == "bad-header-end");
  CHECK(g.consumed == 1);

  const Decoded d = decode(std::span(buf).subspan(1), kMax);
  REQUIRE(d.status == DecodeStatus::frame);
  CHECK(payload_of(buf, 1, d) == "after a space");
}

TEST_CASE("negative length is garbage") {
  Bytes buf = header_with_length(-5, 1.0);
  buf.resize(buf.size() + 40, 0x22);
  const Decoded d = decode(buf, kMax);
  CHECK(d.status == DecodeStatus::garbage);
  CHECK(std::string_view(d.reason) == "negative-length");
  CHECK(d.consumed == 1);

  const Decoded m = decode(header_with_length(INT64_MIN, 1.0), kMax);
  CHECK(m.status == DecodeStatus::garbage);
  CHECK(std::string_view(m.reason) == "negative-length");
}

TEST_CASE("absurd length gives too_large without allocating") {
  const Bytes header = header_with_length(std::int64_t{1} << 62, 1.0);
  const std::size_t before = g_allocations;
  const Decoded d = decode(header, kMax);
  const Decoded max_allowed = decode(header, UINT64_MAX);  // allowed, so it asks for more
  const std::size_t after = g_allocations;
  CHECK(after == before);

  CHECK(d.status == DecodeStatus::too_large);
  CHECK(std::string_view(d.reason) == "too-large");
  CHECK(d.consumed == 1);
  CHECK(d.payload_size == (std::size_t{1} << 62));

  CHECK(max_allowed.status == DecodeStatus::need_more);
  CHECK(max_allowed.needed == (std::size_t{1} << 62) + 31);
}

TEST_CASE("length exactly at max_payload is accepted, one above is too large") {
  const Bytes f = frame("abcd", 2.0);
  CHECK(decode(f, 4).status == DecodeStatus::frame);
  const Decoded d = decode(f, 3);
  CHECK(d.status == DecodeStatus::too_large);
  CHECK(d.payload_size == 4);
  // Judged from the header alone: no need to wait for the payload.
  CHECK(decode(std::span(f).first(26), 3).status == DecodeStatus::too_large);
}

TEST_CASE("bad footer is garbage once the whole frame is present") {
  Bytes f = frame("ABC", 123.45);
  f[31] = 0x21;
  CHECK(decode(std::span(f).first(33), kMax).status == DecodeStatus::need_more);
  const Decoded d = decode(f, kMax);
  CHECK(d.status == DecodeStatus::garbage);
  CHECK(std::string_view(d.reason) == "bad-footer");
  CHECK(d.consumed == 1);
}

TEST_CASE("decode never allocates") {
  Bytes buf = bytes_of("junk ");
  const Bytes f = frame("ABC", 123.45);
  buf.insert(buf.end(), f.begin(), f.end());
  const std::size_t before = g_allocations;
  std::size_t at = 0;
  int frames = 0;
  while (at < buf.size()) {
    const Decoded d = decode(std::span(buf).subspan(at), kMax);
    if (d.status == DecodeStatus::need_more) break;
    frames += d.status == DecodeStatus::frame;
    at += d.consumed;
  }
  CHECK(g_allocations == before);
  CHECK(frames == 1);
}

TEST_CASE("golden files decode as documented and re-encode bit-exactly") {
  struct Expect {
    const char* file;
    std::vector<Frame> frames;
    std::size_t skipped;
    std::vector<std::string> reasons;
  };
  std::string large(100000, '\0');
  for (std::size_t i = 0; i < large.size(); ++i)
    large[i] = static_cast<char>((i * 7) % 251);

  const std::vector<Expect> cases = {
      {"worked_example.bin", {{"ABC", 123.45}}, 0, {}},
      {"keepalive.bin", {{"", 1.0}}, 0, {}},
      {"empty_frame.bin", {{"", 0.0}}, 0, {}},
      {"negative_ts.bin", {{"lost in the seed", -1.0}}, 0, {}},
      {"two_frames.bin", {{"first", 1700000000.25}, {"second frame", 2.5}}, 0, {}},
      {"garbage_then_frame.bin", {{"after garbage", 42.0}}, 7, {"bad-start"}},
      {"spaces_then_frame.bin", {{"after a space", 7.0}}, 1, {"bad-header-end"}},
      {"large_frame.bin", {{large, 3.14159}}, 0, {}},
  };
  for (const Expect& e : cases) {
    CAPTURE(e.file);
    const Bytes buf = read_golden(e.file);
    const Scan s = scan(buf);
    CHECK(s.leftover == 0);
    CHECK(s.skipped == e.skipped);
    CHECK(s.reasons == e.reasons);
    REQUIRE(s.frames.size() == e.frames.size());
    for (std::size_t i = 0; i < e.frames.size(); ++i) {
      CAPTURE(i);
      CHECK(s.frames[i].payload == e.frames[i].payload);
      CHECK(s.frames[i].timestamp == e.frames[i].timestamp);
    }
    CHECK(s.rebuilt == buf);
  }
  CHECK(read_golden("worked_example.bin") == frame("ABC", 123.45));
}

TEST_CASE("golden files survive every split into two writes") {
  for (const char* name : {"worked_example.bin", "two_frames.bin", "garbage_then_frame.bin",
                           "spaces_then_frame.bin", "negative_ts.bin"}) {
    CAPTURE(name);
    const Bytes buf = read_golden(name);
    const Scan whole = scan(buf);
    for (std::size_t cut = 0; cut <= buf.size(); ++cut) {
      CAPTURE(cut);
      // A receiver that only has the first `cut` bytes must not decide anything it would decide
      // differently with the full buffer: whatever it consumed is a prefix of the whole scan.
      const Scan head = scan(Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(cut)));
      const std::size_t used = cut - head.leftover;
      REQUIRE(head.frames.size() <= whole.frames.size());
      const Scan tail = scan(Bytes(buf.begin() + static_cast<std::ptrdiff_t>(used), buf.end()));
      CHECK(head.frames.size() + tail.frames.size() == whole.frames.size());
      CHECK(head.skipped + tail.skipped == whole.skipped);
    }
  }
}
