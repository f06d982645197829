#include "lib/link/detect.h"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "lib/base/byte_order.h"
#include "lib/codec/classic_codec.h"

using namespace dl;

namespace {
std::vector<std::uint8_t> hello_frame(std::uint16_t version = frame::kVersion) {
  frame::Hello h;
  h.session_hi = 1;
  h.session_lo = 2;
  h.max_message = 1 << 20;
  h.window = 1 << 20;
  std::vector<std::uint8_t> f(frame::kHeaderSize + frame::kHelloSize);
  frame::encode_hello(f.data() + frame::kHeaderSize, h);
  put_u16(f.data() + frame::kHeaderSize + 4, version);
  frame::encode(f.data(), frame::Type::hello, 0, 1.0, {f.data() + frame::kHeaderSize, frame::kHelloSize});
  return f;
}
Detection judge(const std::vector<std::uint8_t>& b, Proto p = Proto::automatic) {
  return detect_newcomer(b, p, 1 << 20, "from x");
}
}  // namespace

TEST_CASE("silence decides nothing, and every prefix of a handshake waits") {
  CHECK(judge({}).kind == Detection::need_more);
  auto h = hello_frame();
  for (std::size_t n = 1; n < h.size(); ++n) {
    CHECK(judge({h.begin(), h.begin() + static_cast<std::ptrdiff_t>(n)}).kind == Detection::need_more);
    CHECK(newcomer_read_limit({h.data(), n}) == h.size() - n);  // never beyond the HELLO
  }
  auto d = judge(h);
  REQUIRE(d.kind == Detection::native);
  CHECK(d.hello.session_lo == 2);
}

TEST_CASE("classic by the first byte, once a valid header arrived") {
  std::vector<std::uint8_t> f;
  classic::append_frame(f, {}, 1.0);
  for (std::size_t n = 1; n < classic::kHeaderSize; ++n) {
    CHECK(judge({f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n)}).kind == Detection::need_more);
  }
  CHECK(judge({f.begin(), f.begin() + classic::kHeaderSize}).kind == Detection::classic);
  std::vector<std::uint8_t> spaces_then_garbage(5, 0x20);
  spaces_then_garbage.resize(40, 0x7E);
  auto g = judge(spaces_then_garbage);
  CHECK(g.kind == Detection::refuse);
  CHECK(!g.tell);  // not a native peer: no ERROR frame for it
  CHECK(judge({f.begin(), f.begin() + classic::kHeaderSize}, Proto::native).kind == Detection::refuse);
}

TEST_CASE("garbage and damaged handshakes are refused; a native newcomer is told why") {
  auto g = judge({'G', 'E', 'T', ' '});
  CHECK(g.kind == Detection::refuse);
  CHECK(g.why.id == "bad-marker");
  auto h = hello_frame();
  h[40] ^= 1;  // corrupted on the way
  auto c = judge(h);
  REQUIRE(c.kind == Detection::refuse);
  CHECK(c.why.id == "bad-checksum");
  CHECK(c.tell);
  CHECK(is_retryable(c.why));  // a damaged handshake costs a retry, never the session
  auto v1 = judge(hello_frame(1));
  REQUIRE(v1.kind == Detection::refuse);
  CHECK(v1.why.id == "version");
  CHECK(!is_retryable(v1.why));
  auto data = hello_frame();
  data[1] = static_cast<std::uint8_t>(frame::Type::data);
  frame::encode(data.data(), frame::Type::data, 1, 1.0, {data.data() + frame::kHeaderSize, frame::kHelloSize});
  CHECK(judge(data).why.id == "bad-hello");
  CHECK(judge(hello_frame(), Proto::classic).kind == Detection::refuse);
}
