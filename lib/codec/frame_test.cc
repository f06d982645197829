#include "lib/codec/frame.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  h.incarnation = 77;
  h.token = 88;
  h.recv_next = 42;
  h.delivered = 40;
  h.max_message = 1 << 20;
  h.timeout_ms = 5000;
  h.window = 1 << 22;
  std::uint8_t p[kHelloSize];
  encode_hello(p, h);
  auto r = decode_hello(p);
  REQUIRE(r);
  CHECK(r->recv_next == 42);
  CHECK(r->delivered == 40);
  CHECK(r->timeout_ms == 5000);
  CHECK(r->incarnation == 77);
  CHECK(r->token == 88);
  CHECK(r->window == (1u << 22));
  SUBCASE("a version 1 peer is told to upgrade, finally") {
    p[5] = 1;
    auto v = decode_hello(p);
    REQUIRE(!v);
    CHECK(v.error().id == "version");
    CHECK(v.error().message().find("upgrade") != std::string::npos);
    CHECK(!is_retryable(v.error()));
  }
  SUBCASE("a version 1 HELLO (48 bytes) is a version error, not a size error") {
    p[5] = 1;
    CHECK(decode_hello({p, 48}).error().id == "version");
  }
  SUBCASE("bad fields are retryable bad-hello") {
    for (int field : {0, 1, 2, 3, 4}) {
      std::uint8_t q[kHelloSize];
      std::memcpy(q, p, kHelloSize);
      if (field == 0) std::memset(q + 8, 0, 16);           // session id 0
      if (field == 1) std::memset(q + 40, 0, 8);           // recv_next 0
      if (field == 2) q[55] = 50;                          // delivered >= recv_next
      if (field == 3) std::memset(q + 56, 0, 4);           // max_message 0
      if (field == 4) std::memset(q + 64, 0, 8);           // window 0
      auto v = decode_hello(q);
      REQUIRE(!v);
      CHECK(v.error().id == "bad-hello");
      CHECK(is_retryable(v.error()));
    }
    CHECK(decode_hello({p, kHelloSize - 1}).error().id == "bad-hello");
  }
  p[0] = 'X';
  CHECK(decode_hello(p).error().id == "bad-magic");
}

TEST_CASE("error frames carry the retryable flag; other frames no flags") {
  auto f = encode_error_frame("session-busy", "busy\nhere", true, 1.0);
  std::span<const std::uint8_t> b(reinterpret_cast<const std::uint8_t*>(f.data()), f.size());
  auto d = decode(b, 1 << 20);
  REQUIRE(d.status == frame::Status::frame);
  CHECK(d.header.flags == kFlagRetryable);
  auto e = decode_error_payload(b.subspan(kHeaderSize, d.header.length), "peer x", true);
  CHECK(e.id == "session-busy");
  CHECK(e.message().find('\n') == std::string::npos);
  CHECK(is_retryable(e));
  auto fin = decode_error_payload(b.subspan(kHeaderSize, d.header.length), "peer x", false);
  CHECK(!is_retryable(fin));
  // The peer's text is quoted once, never nested inside our own "peer says" chain.
  CHECK(e.message().find("peer says") == std::string::npos);
  auto data = make(Type::data, 1, 1.0, {1});
  data[3] = 1;  // the retryable bit means nothing on DATA
  CHECK(std::string(decode(data, 1024).id) == "bad-flags");
}

TEST_CASE("peer-stopped is a final disconnection, not a protocol error") {
  auto s = encode_error_payload("peer-stopped", "dlsend was interrupted");
  auto e = decode_error_payload({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}, "peer x");
  CHECK(e.kind == ErrorKind::disconnected);
  CHECK(e.message() == "peer x: stopped: dlsend was interrupted");
  CHECK(!is_retryable(e));
}

TEST_CASE("ack payload: the window") {
  std::uint8_t p[kAckSize];
  encode_ack(p, 123456789);
  CHECK(*decode_ack(p) == 123456789);
  CHECK(!decode_ack({p, 7}));
}

// Golden frames: bytes with their checksums, in testdata/native/ (see its README). Each is
// rebuilt here from its fields and must match byte for byte; and each must decode back.
namespace {
struct Golden {
  const char* file;
  std::vector<std::uint8_t> bytes;
};

std::vector<std::uint8_t> hello_frame(const Hello& h, double ts) {
  std::vector<std::uint8_t> p(kHelloSize);
  encode_hello(p.data(), h);
  return make(Type::hello, 0, ts, p);
}

std::vector<Golden> goldens() {
  std::vector<Golden> g;
  Hello d;
  d.session_hi = 0x0123456789ABCDEFull;
  d.session_lo = 0xFEDCBA9876543210ull;
  d.max_message = 16u << 20;
  d.timeout_ms = 10000;
  d.window = 4u << 20;
  g.push_back({"hello_dialer.bin", hello_frame(d, 1700000000.5)});
  Hello l = d;
  l.incarnation = 0x1111222233334444ull;
  l.token = 0x5555666677778888ull;
  g.push_back({"hello_listener.bin", hello_frame(l, 1700000000.75)});
  Hello r = d;
  r.incarnation = l.incarnation;
  r.token = l.token;
  r.recv_next = 8;
  r.delivered = 5;
  g.push_back({"hello_resume.bin", hello_frame(r, 1700000001.0)});
  g.push_back({"data_abc.bin", make(Type::data, 1, 123.45, {'A', 'B', 'C'})});
  g.push_back({"data_empty.bin", make(Type::data, 2, 0.0, {})});
  std::vector<std::uint8_t> ack(kAckSize);
  encode_ack(ack.data(), 4u << 20);
  g.push_back({"ack.bin", make(Type::ack, 7, 1700000002.0, ack)});
  g.push_back({"keepalive.bin", make(Type::keepalive, 0, 1700000003.0, {})});
  g.push_back({"end.bin", make(Type::end, 9, 1700000004.0, {})});
  auto busy = encode_error_frame("session-busy", "another session is in progress there", true, 1700000005.0);
  g.push_back({"error_session_busy.bin", std::vector<std::uint8_t>(busy.begin(), busy.end())});
  auto stop = encode_error_frame("peer-stopped", "dlsend was interrupted", false, 1700000006.0);
  g.push_back({"error_peer_stopped.bin", std::vector<std::uint8_t>(stop.begin(), stop.end())});
  return g;
}

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::vector<std::uint8_t> out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::uint8_t buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    std::fclose(f);
  }
  return out;
}
}  // namespace

TEST_CASE("golden native frames pin the version 2 wire format") {
  const char* regen = std::getenv("DL_WRITE_GOLDEN");  // a directory: rewrite them there
  for (const Golden& g : goldens()) {
    CAPTURE(g.file);
    if (regen) {
      FILE* f = std::fopen((std::string(regen) + "/" + g.file).c_str(), "wb");
      REQUIRE(f);
      std::fwrite(g.bytes.data(), 1, g.bytes.size(), f);
      std::fclose(f);
      continue;
    }
    auto bytes = read_file(std::string("testdata/native/") + g.file);
    REQUIRE(!bytes.empty());
    CHECK(bytes == g.bytes);
    auto d = decode(bytes, 16u << 20);
    REQUIRE(d.status == frame::Status::frame);
    CHECK(d.frame_size == bytes.size());
    std::span<const std::uint8_t> payload(bytes.data() + kHeaderSize, d.header.length);
    if (d.header.type == Type::hello) CHECK(decode_hello(payload));
    if (d.header.type == Type::ack) CHECK(decode_ack(payload));
  }
  // The first bytes of the dialer's HELLO, by hand: marker, type 1, flags 0, length 72.
  auto h = read_file("testdata/native/hello_dialer.bin");
  if (!regen) {
    REQUIRE(h.size() == 104);
    CHECK(h[0] == 0xD7);
    CHECK(h[1] == 1);
    CHECK(h[7] == 72);
    CHECK(std::string(h.begin() + 32, h.begin() + 36) == "DLNK");
    CHECK(h[37] == 2);  // version 2
  }
}

TEST_CASE("inside TLS, DATA frames carry no checksum and only DATA frames skip the check") {
  std::vector<std::uint8_t> f(kHeaderSize + 5);
  const std::uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
  std::memcpy(f.data() + kHeaderSize, payload, 5);
  encode_data(f.data(), 7, 1.5, {f.data() + kHeaderSize, 5}, Integrity::tls);
  CHECK(get_u64(f.data() + 24) == 0);
  auto d = decode(f, 1024, Integrity::tls);
  REQUIRE(d.status == frame::Status::frame);
  CHECK(d.header.seq == 7);
  CHECK(d.header.length == 5);
  // A peer without TLS would refuse it: the two sides must agree, and with keys they always do.
  CHECK(decode(f, 1024).status == frame::Status::bad);
  // With the checksum, both decoders accept the same frame.
  encode_data(f.data(), 7, 1.5, {f.data() + kHeaderSize, 5}, Integrity::checksum);
  CHECK(decode(f, 1024).status == frame::Status::frame);
  CHECK(decode(f, 1024, Integrity::tls).status == frame::Status::frame);
  // Other frame types keep their checksum inside TLS too.
  std::vector<std::uint8_t> k(kHeaderSize);
  encode(k.data(), Type::keepalive, 0, 2.0, {});
  k[24] ^= 1;
  CHECK(decode(k, 1024, Integrity::tls).status == frame::Status::bad);
}

TEST_CASE("encode_data_copy writes the same frame as encode_data over a payload in place") {
  std::vector<std::uint8_t> payload(100000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 13 + 5);
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{40000}, payload.size()}) {
    for (Integrity in : {Integrity::checksum, Integrity::tls}) {
      CAPTURE(n);
      std::vector<std::uint8_t> a(kHeaderSize + n), b(kHeaderSize + n);
      std::copy(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n), a.begin() + kHeaderSize);
      encode_data(a.data(), 42, 3.25, {a.data() + kHeaderSize, n}, in);
      encode_data_copy(b.data(), 42, 3.25, {payload.data(), n}, in);
      CHECK(a == b);
      CHECK(decode(b, 1u << 20, in).status == frame::Status::frame);
    }
  }
}

TEST_CASE("a forwarded frame under the same seq and timestamp keeps its checksum") {
  std::vector<std::uint8_t> a(kHeaderSize + 5000);
  for (std::size_t i = kHeaderSize; i < a.size(); ++i) a[i] = static_cast<std::uint8_t>(i * 7);
  encode_data(a.data(), 9, -1.5e9, {a.data() + kHeaderSize, 5000}, Integrity::checksum);
  auto d = decode(a, 1u << 20);
  REQUIRE(d.status == frame::Status::frame);
  std::vector<std::uint8_t> b(a);
  encode_data_header(b.data(), 9, d.header.timestamp, 5000, d.header.checksum);
  CHECK(a == b);
  // Under another seq the reused checksum is wrong, and the receiver says so.
  encode_data_header(b.data(), 10, d.header.timestamp, 5000, d.header.checksum);
  CHECK(decode(b, 1u << 20).status == frame::Status::bad);
}
