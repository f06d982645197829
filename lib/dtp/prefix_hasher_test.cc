// Unit tests for PrefixHasher: the digest of a file filled in steps equals the one-shot digest,
// the streamed copy is the file in order, and a broken stream is reported.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
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

TEST_CASE("lent buffers are hashed in place; reclaimed ones are read back from the file") {
  std::vector<std::uint8_t> data(3 * (1 << 20) + 777);
  int fd = temp_file(data);
  Sha256 one;
  one.update(data);
  Digest want = one.finish();
  // Buffer 0 holds a true copy of the first MiB in 1000-byte spans; buffer 1 holds garbage
  // claimed to be the second MiB, and is reclaimed before the prefix reaches it: the digest
  // must come out right, and only the first MiB may count as hashed from buffers.
  std::vector<std::uint8_t> good(data.begin(), data.begin() + (1 << 20));
  std::vector<std::uint8_t> junk(1 << 20, 0xAB);
  PrefixHasher h(fd, -1);
  std::vector<PrefixHasher::Span> spans;
  for (std::size_t off = 0; off < good.size(); off += 1000) {
    spans.push_back({off, good.data() + off, std::min<std::size_t>(1000, good.size() - off)});
  }
  h.lend(0, spans);
  spans.clear();
  for (std::size_t off = 0; off < junk.size(); off += 4096) {
    spans.push_back({(1u << 20) + off, junk.data() + off, 4096});
  }
  h.lend(1, spans);
  h.reclaim(1);
  h.lend(2, std::vector<PrefixHasher::Span>{{10, junk.data(), 10}});  // behind what was lent: ignored
  auto d = h.finish(data.size());
  REQUIRE(d.ok());
  CHECK(*d == want);
  CHECK(h.hashed_from_buffers() == good.size());
  h.reclaim(0);  // nothing left to wait for
  ::close(fd);
}

TEST_CASE("reclaim waits while the worker hashes from that buffer, and the digest stays right") {
  std::vector<std::uint8_t> data(8 << 20);
  int fd = temp_file(data);
  Sha256 one;
  one.update(data);
  Digest want = one.finish();
  std::vector<std::uint8_t> copy = data;  // the "receive buffers": 8 of 1 MiB
  PrefixHasher h(fd, -1);
  for (unsigned b = 0; b < 8; ++b) {
    std::vector<PrefixHasher::Span> spans;
    for (std::size_t off = 0; off < (1u << 20); off += 1440) {
      std::size_t at = b * (1u << 20) + off;
      spans.push_back({at, copy.data() + at, std::min<std::size_t>(1440, (1u << 20) - off)});
    }
    h.lend(b, spans);
    h.advance((b + 1) * (1u << 20));
    if (b >= 2) {
      // Overwrite an older buffer as a receiver would: only after reclaiming it.
      unsigned old = b - 2;
      h.reclaim(old);
      std::fill(copy.begin() + old * (1 << 20), copy.begin() + (old + 1) * (1 << 20), 0xEE);
    }
  }
  auto d = h.finish(data.size());
  REQUIRE(d.ok());
  CHECK(*d == want);
  ::close(fd);
}

TEST_CASE("a stream whose reader stops holds neither reclaim(), nor notify_when(), nor the destructor") {
  // dtpget -o - | a reader that stopped: the worker may wait for it, its caller must not.
  std::vector<std::uint8_t> data(3 << 20);
  int fd = temp_file(data);
  int p[2];
  REQUIRE(::pipe(p) == 0);  // nobody ever reads p[0]
  std::atomic<bool> notified{false};
  {
    PrefixHasher h(fd, p[1]);
    PrefixHasher::Span whole{0, data.data(), data.size()};
    h.lend(0, std::span(&whole, 1));
    h.notify_when(data.size(), [&] { notified = true; });
    // The worker fills the pipe (64 KiB) and waits; give it the time to get there.
    for (int i = 0; i < 100 && h.hashed() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    h.reclaim(0);  // returns: the worker copied the run out of the buffer before writing
    CHECK(h.hashed() < data.size());
    CHECK_FALSE(notified.load());
  }  // and the destructor returns too (the worker is woken out of its wait)
  CHECK_FALSE(notified.load());
  ::close(p[0]);
  ::close(p[1]);
  ::close(fd);
}

TEST_CASE("notify_when: called once the prefix is hashed, at once if it already is") {
  std::vector<std::uint8_t> data((1 << 20) + 5);
  int fd = temp_file(data);
  std::atomic<int> calls{0};
  PrefixHasher h(fd, -1);
  h.notify_when(data.size(), [&] { ++calls; });
  for (int i = 0; i < 1000 && calls.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(calls.load() == 1);
  CHECK(h.hashed() == data.size());
  h.notify_when(data.size(), [&] { ++calls; });  // already there: called from here
  CHECK(calls.load() == 2);
  ::close(fd);
}
