// Full duplex at full speed under credit flow control (issue: "two links flooding each other").
//
// Topology, one reactor: S1 <-> [link A] <-> bridge <-> [link B] <-> S2. S1 and S2 flood each
// other in both directions and always take what arrives. The bridge takes a message from one
// link only when the other link accepts it at once (what dlbridge, Databridge or an echo
// responder do). With acknowledgements stuck behind unread data (protocol v1) this stalls within
// a second; with credit it must keep moving for the whole run and deliver everything, in order.
// A second case: an echo responder that answers only when it can, and a flooding client.
// DL_DUPLEX_SECONDS sets the flood duration (default 30).
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lib/link/link.h"

using namespace dl;

namespace {

double flood_seconds() {
  const char* s = std::getenv("DL_DUPLEX_SECONDS");
  return s ? std::atof(s) : 30.0;
}

LinkOptions listen_opts() {
  LinkOptions o;
  o.listen = true;
  o.endpoint = *parse_listen_endpoint("127.0.0.1:0");
  o.wait_s = 10;
  o.linger_ms = 200;
  // The default window (8M) is larger than a receive ring: with v1 that is what stalls.
  return o;
}

LinkOptions dial_opts(const Link& server) {
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(server.local_address())));
  o.wait_s = 10;
  o.linger_ms = 200;

  o.backoff.initial = std::chrono::milliseconds(5);
  return o;
}

// Message i: an 8-byte index then a pattern, 16 B .. 40 KiB, so frames of many sizes interleave.
std::vector<std::uint8_t> message(std::uint64_t i) {
  std::size_t n = 16 + static_cast<std::size_t>((i * 2654435761u) % 40000);
  std::vector<std::uint8_t> m(n);
  std::memcpy(m.data(), &i, 8);
  for (std::size_t k = 8; k < n; ++k) m[k] = static_cast<std::uint8_t>(i + k);
  return m;
}

bool valid(std::span<const std::uint8_t> p, std::uint64_t expect) {
  auto m = message(expect);
  return p.size() == m.size() && std::memcmp(p.data(), m.data(), m.size()) == 0;
}

// A flooding endpoint: sends message(0..) as fast as the link takes them, takes everything.
struct Flood {
  Link& link;
  std::uint64_t sent = 0, got = 0;
  bool bad = false, stop = false;
  void step() {
    while (!stop) {
      auto m = message(sent);
      if (!link.try_send(m, 1.0)) break;
      ++sent;
    }
    Message in;
    while (link.peek(in)) {
      if (!valid(in.payload, got)) bad = true;
      ++got;
      link.consume();
    }
  }
};

// Takes from `from` only what `to` accepts right now.
std::uint64_t forward(Link& from, Link& to) {
  std::uint64_t n = 0;
  Message m;
  while (from.peek(m)) {
    if (!to.try_send(m.payload, m.timestamp)) break;
    from.consume();
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("a bridge between two full-duplex floods never stalls") {
  Reactor r;
  Link b1(r, listen_opts(), nullptr);
  REQUIRE(b1.start());
  Link s2(r, listen_opts(), nullptr);
  REQUIRE(s2.start());
  Link s1(r, dial_opts(b1), nullptr);
  REQUIRE(s1.start());
  Link b2(r, dial_opts(s2), nullptr);
  REQUIRE(b2.start());
  Flood f1{s1}, f2{s2};
  auto start = Clock::now();
  auto last_progress = start;
  std::uint64_t last_total = 0, longest_stall_ms = 0;
  double secs = flood_seconds();
  while (true) {
    r.run_once(std::chrono::milliseconds(5));
    f1.step();
    f2.step();
    forward(b1, b2);
    forward(b2, b1);
    auto now = Clock::now();
    std::uint64_t total = f1.got + f2.got;
    if (total != last_total) {
      last_total = total;
      last_progress = now;
    }
    auto stall = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_progress).count();
    longest_stall_ms = std::max<std::uint64_t>(longest_stall_ms, static_cast<std::uint64_t>(stall));
    if (stall > 3000) break;  // stalled: fail below
    if (!f1.stop && now - start > std::chrono::duration<double>(secs)) {
      f1.stop = f2.stop = true;  // then everything sent must arrive
    }
    if (f1.stop && f1.got == f2.sent && f2.got == f1.sent) break;
    if (s1.closed() || s2.closed() || b1.closed() || b2.closed()) break;
  }
  MESSAGE("messages each way: " << f1.sent << " and " << f2.sent << "; longest pause "
                                 << longest_stall_ms << " ms");
  CHECK(!s1.failure());
  CHECK(!s2.failure());
  CHECK(longest_stall_ms < 3000);
  CHECK(f1.stop);
  CHECK(f2.got == f1.sent);
  CHECK(f1.got == f2.sent);
  CHECK(!f1.bad);
  CHECK(!f2.bad);
  CHECK(f1.sent > 1000);
  CHECK(f2.sent > 1000);
}

TEST_CASE("an echo responder that answers only when it can never stalls a flooding client") {
  Reactor r;
  Link echo(r, listen_opts(), nullptr);
  REQUIRE(echo.start());
  Link client(r, dial_opts(echo), nullptr);
  REQUIRE(client.start());
  Flood c{client};
  auto start = Clock::now();
  auto last_progress = start;
  std::uint64_t last = 0;
  double secs = std::min(5.0, flood_seconds());
  bool stalled = false;
  while (true) {
    r.run_once(std::chrono::milliseconds(5));
    c.step();
    forward(echo, echo);
    auto now = Clock::now();
    if (c.got != last) {
      last = c.got;
      last_progress = now;
    }
    if (now - last_progress > std::chrono::seconds(3)) {
      stalled = true;
      break;
    }
    if (!c.stop && now - start > std::chrono::duration<double>(secs)) c.stop = true;
    if (c.stop && c.got == c.sent) break;
    if (client.closed() || echo.closed()) break;
  }
  CHECK(!stalled);
  CHECK(c.got == c.sent);
  CHECK(!c.bad);
  CHECK(c.sent > 1000);
}
