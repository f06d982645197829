// Unit tests for PrefixHasher: the digest of a file filled in steps equals the one-shot digest,
// the streamed copy is the file in order, and a broken stream is reported.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lib/dtp/prefix_hasher.h"

using namespace dl;
using namespace dl::dtp;

namespace {
int temp_file(std::vector<std::uint8_t>& data) {
  char path[] = "/tmp/prefix-hasher-XXXXXX";
  int fd = ::mkstemp(path);
  ::unlink(path);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 31 + (i >> 12));
  REQUIRE(::pwrite(fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
  return fd;
}
}  // namespace

TEST_CASE("digest of a prefix advanced in steps equals the one-shot digest; the stream is in order") {
  std::vector<std::uint8_t> data(5 * (1 << 20) + 123);
  int fd = temp_file(data);
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::vector<std::uint8_t> streamed;
  std::thread reader([&] {
    std::uint8_t b[65536];
    ssize_t n;
    while ((n = ::read(p[0], b, sizeof b)) > 0) streamed.insert(streamed.end(), b, b + n);
  });
  Digest got;
  {
    PrefixHasher h(fd, p[1]);
    for (std::uint64_t at = 0; at < data.size(); at += 700000) h.advance(at);
    h.advance(1000);  // going backwards is ignored
    auto d = h.finish(data.size());
    REQUIRE(d.ok());
    got = *d;
    CHECK(h.hashed() == data.size());
  }
  ::close(p[1]);
  reader.join();
  CHECK(streamed == data);
  Sha256 one;
  one.update(data);
  CHECK(got == one.finish());
  auto whole = sha256_fd(fd, data.size());
  REQUIRE(whole.ok());
  CHECK(*whole == got);
  ::close(p[0]);
  ::close(fd);
}

TEST_CASE("a closed stream is reported; destruction mid-way does not hang") {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::uint8_t> data(3 << 20);
  int fd = temp_file(data);
  int p[2];
  REQUIRE(::pipe(p) == 0);
  ::close(p[0]);
  {
    PrefixHasher h(fd, p[1]);
    auto d = h.finish(data.size());
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().kind == ErrorKind::io);
    CHECK(h.failure().has_value());
  }
  {
    PrefixHasher h(fd, -1);
    h.advance(data.size());
  }  // destroyed while (perhaps) hashing
  ::close(p[1]);
  ::close(fd);
}
