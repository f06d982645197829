// Unit tests for the session file: round trip, and every kind of damage detected.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "lib/base/byte_order.h"
#include "lib/dtp/session.h"

using namespace dl;
using namespace dl::dtp;

namespace {
SessionState sample() {
  SessionState s;
  s.server = "127.0.0.1:9000";
  s.name = "dir/payload.bin";
  s.output = "/tmp/out.bin";
  s.size = (5ull << 32) + 17;
  for (int i = 0; i < 32; ++i) s.sha256[i] = static_cast<std::uint8_t>(i * 7);
  s.chunk = 1440;
  s.wanted.add(0, s.size);
  for (std::uint64_t i = 0; i < 10000; ++i) s.received.add(i * 4000, i * 4000 + 1440);
  s.received.add((4ull << 32) - 100, (4ull << 32) + 100);
  return s;
}
}  // namespace

TEST_CASE("round trip keeps everything") {
  SessionState s = sample();
  auto bytes = encode_session(s);
  auto d = decode_session(bytes);
  REQUIRE(d.ok());
  CHECK(d->server == s.server);
  CHECK(d->name == s.name);
  CHECK(d->output == s.output);
  CHECK(d->size == s.size);
  CHECK(d->sha256 == s.sha256);
  CHECK(d->chunk == 1440);
  CHECK(d->wanted == s.wanted);
  CHECK(d->received == s.received);
  CHECK(d->received.total() == s.received.total());
}

TEST_CASE("every flipped bit and every truncation is refused") {
  auto bytes = encode_session(sample());
  for (std::size_t i = 0; i < bytes.size(); i += 97) {
    auto b = bytes;
    b[i] ^= 0x01;
    CHECK_FALSE(decode_session(b).ok());
  }
  for (std::size_t n : {std::size_t{0}, std::size_t{7}, std::size_t{8}, std::size_t{60}, bytes.size() - 1}) {
    CHECK_FALSE(decode_session(std::span(bytes).first(n)).ok());
  }
  auto e = decode_session(std::span(bytes).first(bytes.size() - 1));
  CHECK(e.error().kind == ErrorKind::protocol);
}

TEST_CASE("a future version and a foreign file say so") {
  auto bytes = encode_session(sample());
  put_u16(bytes.data() + 8, 2);
  auto d = decode_session(bytes);
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().message().find("version 2") != std::string::npos);
  std::string junk = "#!/bin/sh\necho hello\n";
  auto j = decode_session({reinterpret_cast<const std::uint8_t*>(junk.data()), junk.size()});
  REQUIRE_FALSE(j.ok());
  CHECK(j.error().message().find("not a DTP session file") != std::string::npos);
}

TEST_CASE("save and load through the file system") {
  char dir[] = "/tmp/dtp-session-test-XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string path = std::string(dir) + "/s.bin";
  SessionState s = sample();
  REQUIRE(save_session(path, s, true).ok());
  auto l = load_session(path);
  REQUIRE(l.ok());
  CHECK(l->received == s.received);
  s.received.add(0, 1ull << 20);
  REQUIRE(save_session(path, s, false).ok());  // replaces, atomically
  CHECK(load_session(path)->received == s.received);
  CHECK_FALSE(load_session(path + ".missing").ok());
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("fragment_limit: what a server sending whole chunks can make of a payload, and no more") {
  // 50 MiB in 1440-byte chunks with every other chunk lost: the most holes a legitimate
  // transfer leaves, well within the limit.
  std::uint64_t size = 50ull << 20, chunk = 1440;
  RangeSet every_other;
  for (std::uint64_t a = 0; a < size; a += 2 * chunk) every_other.add(a, std::min(a + chunk, size));
  CHECK(every_other.count() < fragment_limit(size, 1440, 1, 0));
  // 1-byte DATA a byte apart (a server fragmenting the payload) could make 26M ranges of it:
  // the limit stops them before 1 in 200 of those.
  CHECK(fragment_limit(size, 1440, 1, 0) < size / 2 / 100);
  // Wanted ranges (--range) and what a resumed session brought (an earlier, smaller chunk)
  // raise it; a tiny payload still has the slack for repairs cut short.
  CHECK(fragment_limit(size, 1440, 5000, 0) == fragment_limit(size, 1440, 1, 0) + 4999);
  CHECK(fragment_limit(size, 1440, 1, 300000) == fragment_limit(size, 1440, 1, 0) + 300000);
  CHECK(fragment_limit(0, 1440, 0, 0) >= 65536);
  // A huge announced size saturates; the memory bound is then kMaxReceivedRanges.
  CHECK(fragment_limit(UINT64_MAX, 1, 1, 1) == UINT64_MAX);
  CHECK(fragment_limit(UINT64_MAX, 0, 0, 0) == UINT64_MAX);
  CHECK(fragment_limit(1ull << 40, 1440, 1, 0) > kMaxReceivedRanges);
}
