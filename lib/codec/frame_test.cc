#include "lib/codec/frame.h"

#include <doctest/doctest.h>

#include <vector>

using namespace dl;
using namespace dl::frame;

namespace {
std::vector<std::uint8_t> make(Type t, std::uint64_t seq, double ts, std::vector<std::uint8_t> payload) {
  std::vector<std::uint8_t> f(kHeaderSize + payload.size());
  std::copy(payload.begin(), payload.end(), f.begin() + kHeaderSize);
  encode(f.data(), t, seq, ts, {f.data() + kHeaderSize, payload.size()});
  return f;
}
}  // namespace

TEST_CASE("round trip with explicit big-endian layout") {
  auto f = make(Type::data, 0x0102030405060708ull, 123.45, {'A', 'B', 'C'});
  CHECK(f[0] == 0xD7);
  CHECK(f[1] == 2);
  CHECK(f[4] == 0);
  CHECK(f[7] == 3);
  CHECK(f[8] == 1);
  CHECK(f[15] == 8);
  CHECK(f[16] == 0x40);  // 123.45 = 0x405EDCCCCCCCCCCD big-endian
  CHECK(f[17] == 0x5E);
  auto d = decode(f, 1024);
  REQUIRE(d.status == frame::Status::frame);
  CHECK(d.frame_size == f.size());
  CHECK(d.header.seq == 0x0102030405060708ull);
  CHECK(d.header.timestamp == 123.45);
  CHECK(d.header.length == 3);
}

TEST_CASE("every malformed class is refused with a stable id") {
  auto good = make(Type::data, 7, 1.0, std::vector<std::uint8_t>(100, 9));
  SUBCASE("truncated: need more, never bad") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      auto d = decode({good.data(), n}, 1024);
      CHECK(d.status == frame::Status::need_more);
      CHECK(d.needed > n);
    }
  }
  SUBCASE("wrong marker") {
    auto f = good;
    f[0] = 'G';
    CHECK(std::string(decode(f, 1024).id) == "bad-marker");
  }
  SUBCASE("unknown type") {
    auto f = good;
    f[1] = 99;
    CHECK(std::string(decode(f, 1024).id) == "bad-type");
  }
  SUBCASE("reserved flags") {
    auto f = good;
    f[3] = 1;
    CHECK(std::string(decode(f, 1024).id) == "bad-flags");
  }
  SUBCASE("absurd length refused from the header alone") {
    auto f = good;
    f[4] = 0xFF;
    auto d = decode({f.data(), kHeaderSize}, 1024);
    CHECK(d.status == frame::Status::bad);
    CHECK(std::string(d.id) == "too-large");
    CHECK(decode_error(d, 1024, "x").message().find("1024") != std::string::npos);
  }
  SUBCASE("over the configured limit") {
    CHECK(std::string(decode(good, 99).id) == "too-large");
    CHECK(decode(good, 100).status == frame::Status::frame);
  }
  SUBCASE("bad checksum: payload or header bit flip") {
    for (std::size_t i : {std::size_t{9}, std::size_t{20}, std::size_t{40}, good.size() - 1}) {
      auto f = good;
      f[i] ^= 0x10;
      auto d = decode(f, 1024);
      CHECK(d.status == frame::Status::bad);
      CHECK(std::string(d.id) == "bad-checksum");
    }
  }
}

TEST_CASE("hello round trip and version check") {
  Hello h;
  h.session_hi = 1;
  h.session_lo = 2;
  h.recv_next = 42;
  h.max_message = 1 << 20;
  h.timeout_ms = 5000;
  std::uint8_t p[kHelloSize];
  encode_hello(p, h);
  auto r = decode_hello(p);
  REQUIRE(r);
  CHECK(r->recv_next == 42);
  CHECK(r->timeout_ms == 5000);
  p[5] = 9;
  auto v = decode_hello(p);
  REQUIRE(!v);
  CHECK(v.error().id == "version");
  p[0] = 'X';
  CHECK(decode_hello(p).error().id == "bad-magic");
}

TEST_CASE("error payload becomes a one-line peer error") {
  auto s = encode_error_payload("session-busy", "busy\nhere");
  auto e = decode_error_payload({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}, "from x");
  CHECK(e.id == "session-busy");
  CHECK(e.message().find('\n') == std::string::npos);
  CHECK(!is_retryable(e));
}
