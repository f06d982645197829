#include "lib/net/pump.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

// Feeds `data` into `in` and collects everything from `out` until end of stream, driving
// the reactor; returns what arrived.
// `close_in` ends the input (default: shutdown(SHUT_WR) on the socket `in`).
std::vector<std::uint8_t> drive(Reactor& r, int in, int out, const std::vector<std::uint8_t>& data,
                                bool& done, std::function<void()> close_in = {}) {
  std::vector<std::uint8_t> got;
  std::size_t sent = 0;
  bool out_eof = false;
  auto wr = r.watch(in, POLLOUT, [&](short) {
    ssize_t n = ::write(in, data.data() + sent, data.size() - sent);
    if (n > 0) sent += static_cast<std::size_t>(n);
  });
  auto rd = r.watch(out, POLLIN, [&](short) {
    std::uint8_t buf[65536];
    ssize_t n = ::read(out, buf, sizeof buf);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    if (n == 0) out_eof = true;
  });
  bool shut = false;
  run_until(r, [&] {
    if (sent == data.size() && !shut) {
      r.set_events(wr, 0);
      if (close_in) {
        close_in();
      } else {
        ::shutdown(in, SHUT_WR);
      }
      shut = true;
    }
    return out_eof && done;
  });
  r.unwatch(wr);
  r.unwatch(rd);
  return got;
}

}  // namespace

TEST_CASE("socket to socket: every byte, in order, and the half-close passes through") {
  for (bool splice : {true, false}) {
    CAPTURE(splice);
    Reactor r;
    auto [src_peer, src] = socket_pair(SOCK_NONBLOCK);
    auto [dst, dst_peer] = socket_pair(SOCK_NONBLOCK);
    auto from = Stream::from_fd(r, std::move(src));
    auto to = Stream::from_fd(r, std::move(dst));
    std::optional<Status> result;
    PumpOptions o;
    o.splice = splice;
    o.buffer = 64 * 1024;
    Pump p(*from, *to, o, [&](Status st) { result = st; });
    p.start();
    CHECK(p.splicing() == splice);
    auto data = random_bytes(8 << 20);
    bool done = false;
    auto probe = r.before_poll([&] { done = result.has_value(); });
    auto got = drive(r, src_peer.get(), dst_peer.get(), data, done);
    r.remove_before_poll(probe);
    REQUIRE(result.has_value());
    CHECK(*result);
    CHECK(p.bytes() == data.size());
    CHECK(got == data);
  }
}

TEST_CASE("backpressure: a destination that does not read holds the source back") {
  Reactor r;
  auto [src_peer, src] = socket_pair(SOCK_NONBLOCK);
  auto [dst, dst_peer] = socket_pair(SOCK_NONBLOCK);
  auto from = Stream::from_fd(r, std::move(src));
  auto to = Stream::from_fd(r, std::move(dst));
  PumpOptions o;
  o.buffer = 64 * 1024;
  Pump p(*from, *to, o, [](Status) { FAIL("must not finish"); });
  p.start();
  auto data = random_bytes(64 << 20);
  std::size_t sent = 0;
  auto wr = r.watch(src_peer.get(), POLLOUT, [&](short) {
    ssize_t n = ::write(src_peer.get(), data.data() + sent, data.size() - sent);
    if (n > 0) sent += static_cast<std::size_t>(n);
  });
  for (int i = 0; i < 200; ++i) r.run_once(1ms);
  r.unwatch(wr);
  // Kernel buffers on both sockets plus the pump's own: far below 64 MiB, and nothing lost.
  CHECK(sent < data.size() / 2);
  CHECK(p.bytes() < sent);
}

TEST_CASE("a destination splice refuses (O_APPEND file) falls back to copying, bytes intact") {
  Reactor r;
  auto [src_peer, src] = socket_pair(SOCK_NONBLOCK);
  char path[] = "/tmp/dl_pump_test_XXXXXX";
  Fd tmp(::mkstemp(path));
  REQUIRE(tmp.valid());
  Fd app(::open(path, O_WRONLY | O_APPEND | O_CLOEXEC));
  ::unlink(path);
  REQUIRE(app.valid());
  auto from = Stream::from_fd(r, std::move(src));
  auto to = Stream::from_fd(r, std::move(app));
  std::optional<Status> result;
  Pump p(*from, *to, {}, [&](Status st) { result = st; });
  p.start();
  CHECK(p.splicing());
  auto data = random_bytes(3 << 20);
  std::size_t sent = 0;
  auto wr = r.watch(src_peer.get(), POLLOUT, [&](short) {
    if (sent == data.size()) return;  // shut down already: a write now would raise SIGPIPE
    ssize_t n = ::write(src_peer.get(), data.data() + sent, data.size() - sent);
    if (n > 0) sent += static_cast<std::size_t>(n);
    if (sent == data.size()) ::shutdown(src_peer.get(), SHUT_WR);
  });
  REQUIRE(run_until(r, [&] { return result.has_value(); }));
  r.unwatch(wr);
  CHECK(*result);
  CHECK(!p.splicing());
  std::vector<std::uint8_t> back(data.size() + 1);
  CHECK(::pread(tmp.get(), back.data(), back.size(), 0) == static_cast<ssize_t>(data.size()));
  back.resize(data.size());
  CHECK(back == data);
}

TEST_CASE("pipe to socket and socket to pipe, as stdin and stdout would be") {
  Reactor r;
  int in[2], out[2];
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  Fd in_r(in[0]), in_w(in[1]), out_r(out[0]), out_w(out[1]);
  auto [a, b] = socket_pair(SOCK_NONBLOCK);
  // stdin -> a ... b -> stdout: a relay through a socket pair.
  auto stdin_s = Stream::from_inherited(r, in_r.get(), false);
  auto stdout_s = Stream::from_inherited(r, out_w.get(), true);
  auto sa = Stream::from_fd(r, std::move(a));
  auto sb = Stream::from_fd(r, std::move(b));
  std::optional<Status> r1, r2;
  Pump p1(*stdin_s, *sa, {}, [&](Status st) { r1 = st; });
  Pump p2(*sb, *stdout_s, {}, [&](Status st) { r2 = st; });
  p1.start();
  p2.start();
  CHECK(p1.splicing());
  CHECK(p2.splicing());
  auto data = random_bytes(1 << 20);
  bool done = false;
  auto probe = r.before_poll([&] { done = r1.has_value() && r2.has_value(); });
  ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
  auto got = drive(r, in_w.get(), out_r.get(), data, done, [&] { in_w.reset(); });
  r.remove_before_poll(probe);
  CHECK(*r1);
  CHECK(*r2);
  CHECK(got == data);
}

TEST_CASE("a destination that went away ends the pump with a write error") {
  Reactor r;
  auto [src_peer, src] = socket_pair(SOCK_NONBLOCK);
  auto [dst, dst_peer] = socket_pair(SOCK_NONBLOCK);
  auto from = Stream::from_fd(r, std::move(src));
  auto to = Stream::from_fd(r, std::move(dst));
  std::optional<Status> result;
  Pump p(*from, *to, {}, [&](Status st) { result = st; });
  p.start();
  dst_peer.reset();
  REQUIRE(::write(src_peer.get(), "hello", 5) == 5);
  REQUIRE(run_until(r, [&] { return result.has_value(); }));
  REQUIRE(!*result);
  CHECK(result->error().kind == ErrorKind::io);
  CHECK(result->error().context == "write");
}

TEST_CASE("two pumps make a full-duplex relay; each half-close passes on its own") {
  Reactor r;
  auto [left_peer, left] = socket_pair(SOCK_NONBLOCK);
  auto [right, right_peer] = socket_pair(SOCK_NONBLOCK);
  auto l = Stream::from_fd(r, std::move(left));
  auto rs = Stream::from_fd(r, std::move(right));
  std::optional<Status> lr, rl;
  Pump p1(*l, *rs, {}, [&](Status st) { lr = st; });
  Pump p2(*rs, *l, {}, [&](Status st) { rl = st; });
  p1.start();
  p2.start();
  // Left ends its direction at once; right keeps talking after that, and is still heard.
  REQUIRE(::write(left_peer.get(), "ping", 4) == 4);
  ::shutdown(left_peer.get(), SHUT_WR);
  REQUIRE(run_until(r, [&] { return lr.has_value(); }));
  CHECK(*lr);
  CHECK(!rl.has_value());
  char buf[16];
  CHECK(::read(right_peer.get(), buf, sizeof buf) == 4);
  CHECK(::read(right_peer.get(), buf, sizeof buf) == 0);  // the half-close arrived
  REQUIRE(::write(right_peer.get(), "pong", 4) == 4);
  ::shutdown(right_peer.get(), SHUT_WR);
  REQUIRE(run_until(r, [&] { return rl.has_value(); }));
  CHECK(*rl);
  CHECK(::read(left_peer.get(), buf, sizeof buf) == 4);
  CHECK(std::string(buf, 4) == "pong");
  CHECK(::read(left_peer.get(), buf, sizeof buf) == 0);
}

TEST_CASE("small segments that take every pipe slot while the destination is full: no spinning") {
  Reactor r;
  auto [src_peer, src] = socket_pair(SOCK_NONBLOCK);
  auto [dst, dst_peer] = socket_pair(SOCK_NONBLOCK);
  std::vector<std::uint8_t> fill(65536, 'x');
  while (::write(dst.get(), fill.data(), fill.size()) > 0) {
  }
  auto from = Stream::from_fd(r, std::move(src));
  auto to = Stream::from_fd(r, std::move(dst));
  PumpOptions o;
  o.buffer = 64 * 1024;  // 16 slots
  Pump p(*from, *to, o, [](Status) { FAIL("must not finish"); });
  p.start();
  REQUIRE(p.splicing());
  for (int i = 0; i < 200; ++i) REQUIRE(::write(src_peer.get(), "0123456789", 10) == 10);  // one skb each
  r.run_once(0ms);
  // With the source readable but nowhere to put its bytes, every wait must block for its
  // full timeout. A spinning pump returns from each at once.
  auto t0 = Clock::now();
  for (int i = 0; i < 10; ++i) r.run_once(20ms);
  CHECK(Clock::now() - t0 >= 150ms);
  // Once the destination drains, everything arrives.
  std::size_t drained = 0, got = 0;
  std::vector<std::uint8_t> buf(1 << 20);
  run_until(r, [&] {
    ssize_t n;
    while ((n = ::read(dst_peer.get(), buf.data(), buf.size())) > 0) {
      // The filler is all 'x'; the relayed bytes are digits.
      for (ssize_t k = 0; k < n; ++k) {
        if (buf[static_cast<std::size_t>(k)] == 'x') ++drained;
        else ++got;
      }
    }
    return got == 2000;
  });
  CHECK(got == 2000);
  CHECK(p.bytes() == 2000);
}
