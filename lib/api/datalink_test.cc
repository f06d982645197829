#include "lib/api/datalink.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using dl::Datalink;
using dl::DatalinkOptions;

bool wait_for(const std::function<bool()>& pred, int ms = 5000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

std::string text(const Datalink::Received& r) { return std::string(r.bytes.begin(), r.bytes.end()); }

struct Pair {
  std::unique_ptr<Datalink> server, client;
  explicit Pair(DatalinkOptions o = {}) {
    dl::Error e;
    server = Datalink::server("127.0.0.1:0", 5000, o, &e);
    REQUIRE_MESSAGE(server, e.message());
    REQUIRE(server->port() != 0);
    client = Datalink::client("127.0.0.1", server->port(), 5000, o, &e);
    REQUIRE_MESSAGE(client, e.message());
    REQUIRE(wait_for([&] { return server->is_ready() && client->is_ready(); }));
  }
};

}  // namespace

TEST_CASE("round trip both ways, has_data, is_ready, timestamps") {
  Pair p;
  CHECK(p.client->isReady());
  CHECK_FALSE(p.server->hasData());
  REQUIRE(p.client->write("hello", 5, 123.5));
  REQUIRE(wait_for([&] { return p.server->has_data(); }));
  auto r = p.server->read(1000);
  REQUIRE(r);
  CHECK(text(*r) == "hello");
  CHECK(r->timestamp == 123.5);
  CHECK_FALSE(p.server->has_data());

  REQUIRE(p.server->write("world!", 6));  // default timestamp: now
  auto r2 = p.client->read(2000);
  REQUIRE(r2);
  CHECK(text(*r2) == "world!");
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(r2->timestamp > now - 60);
  CHECK(r2->timestamp <= now + 1);
  CHECK(p.client->writeKeepAlive());
  CHECK(p.client->flush(2000));
  CHECK_FALSE(p.client->error());
}

TEST_CASE("many messages keep order; next_size/read_into; empty messages (native)") {
  Pair p;
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      std::string s = "message " + std::to_string(i);
      REQUIRE(p.client->write(s.data(), s.size(), i));
    }
    REQUIRE(p.client->write(nullptr, 0, -1.0));
  });
  for (int i = 0; i < 2000; ++i) {
    auto n = p.server->next_size(5000);
    REQUIRE(n);
    std::vector<char> buf(*n);
    std::size_t size = 0;
    double ts = 0;
    if (*n > 2) {
      CHECK_FALSE(p.server->read_into(buf.data(), 2, &size, &ts));  // too small: kept
      CHECK(size == *n);
    }
    REQUIRE(p.server->read_into(buf.data(), buf.size(), &size, &ts));
    CHECK(std::string(buf.data(), size) == "message " + std::to_string(i));
    CHECK(ts == i);
  }
  auto empty = p.server->read(5000);
  REQUIRE(empty);
  CHECK(empty->bytes.empty());
  CHECK(empty->timestamp == -1.0);
  writer.join();
}

TEST_CASE("read times out; close ends the peer's input") {
  Pair p;
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(p.server->read(100));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(90));
  REQUIRE(p.client->write("last", 4, 1));
  // close() waits until the peer has read (acknowledged) what we wrote: read meanwhile.
  std::thread closer([&] { p.client->close(); });
  auto r = p.server->read(2000);
  REQUIRE(r);
  CHECK(text(*r) == "last");
  closer.join();
  CHECK_FALSE(p.client->write("late", 4, 1));
  t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(p.server->read(3000));  // end of input: returns at once
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000));
  CHECK(p.server->peer_finished());
}

TEST_CASE("close() from another thread ends a read() and a write() that block on the same link") {
  DatalinkOptions o;
  o.window = 64 << 10;
  o.close_timeout_ms = 500;
  Pair p(o);
  // The client writes into a window nobody drains (the server does not read) until write
  // blocks; the server blocks in read(-1). close() on each must end both calls at once.
  std::vector<char> chunk(16 << 10, 'w');
  std::atomic<int> writes{0};
  std::atomic<bool> write_ended{false}, read_ended{false};
  std::optional<Datalink::Received> got;
  std::thread writer([&] {
    while (p.client->write(chunk.data(), chunk.size(), 1)) ++writes;
    write_ended = true;
  });
  std::thread reader([&] {
    // A reader on the client side: nothing ever comes from the server.
    got = p.client->read(-1);
    read_ended = true;
  });
  // Blocked: the window and the socket buffers are full, so writes stop being counted.
  int last = -1;
  REQUIRE(wait_for([&] {
    int now = writes;
    bool still = now == last;
    last = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return still && now > 0;
  }, 20000));
  CHECK_FALSE(write_ended);
  CHECK_FALSE(read_ended);
  auto t0 = std::chrono::steady_clock::now();
  p.client->close();  // bounded by close_timeout_ms: its data cannot all be acknowledged
  writer.join();
  reader.join();
  CHECK(write_ended);
  CHECK(read_ended);
  CHECK_FALSE(got);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(3000));
}

TEST_CASE("too large messages are refused") {
  DatalinkOptions o;
  o.max_message = 1000;
  Pair p(o);
  std::vector<char> big(2000, 'x');
  CHECK_FALSE(p.client->write(big.data(), big.size(), 1));
  REQUIRE(p.client->last_error());
  CHECK(p.client->last_error()->kind == dl::ErrorKind::too_large);
  CHECK(p.client->write(big.data(), 1000, 1));
  auto r = p.server->read(2000);
  REQUIRE(r);
  CHECK(r->bytes.size() == 1000);
}

TEST_CASE("backpressure: write_for times out when the window is full and nobody reads") {
  DatalinkOptions o;
  o.window = 1 << 20;
  Pair p(o);
  std::vector<char> chunk(256 * 1024, 'y');
  int sent = 0, result = 1;
  for (int i = 0; i < 400 && result == 1; ++i) {
    result = p.client->write_for(chunk.data(), chunk.size(), 1, 200);
    if (result == 1) ++sent;
  }
  CHECK(result == 0);  // the peer's receive buffers and our window filled up
  int got = 0;
  while (got < sent) {
    auto r = p.server->read(5000);
    REQUIRE(r);
    ++got;
  }
  CHECK(p.client->write_for(chunk.data(), chunk.size(), 1, 2000) == 1);
  CHECK(p.server->read(5000));
  CHECK(p.client->flush(5000));
}

TEST_CASE("classic protocol between two Datalinks") {
  DatalinkOptions o;
  o.proto = dl::Proto::classic;
  Pair p(o);
  REQUIRE(p.client->write("abc", 3, 5.0));
  auto r = p.server->read(2000);
  REQUIRE(r);
  CHECK(text(*r) == "abc");
  CHECK(r->timestamp == 5.0);
  REQUIRE(p.server->write("xyz", 3, 6.0));
  auto r2 = p.client->read(2000);
  REQUIRE(r2);
  CHECK(text(*r2) == "xyz");
  CHECK(p.client->write(nullptr, 0, 1.0));  // accepted and dropped (classic has no empty messages)
  CHECK(p.client->flush(2000));
}

TEST_CASE("auto server serves a classic client") {
  DatalinkOptions so;
  so.proto = dl::Proto::automatic;
  auto server = Datalink::server("127.0.0.1:0", 5000, so);
  REQUIRE(server);
  DatalinkOptions co;
  co.proto = dl::Proto::classic;
  auto client = Datalink::client("127.0.0.1", server->port(), 5000, co);
  REQUIRE(client);
  REQUIRE(client->write("seed", 4, 2.0));
  auto r = server->read(3000);
  REQUIRE(r);
  CHECK(text(*r) == "seed");
}

TEST_CASE("Databridge forwards both ways and holds messages while a side is down") {
  auto a = Datalink::server("127.0.0.1:0", 5000);
  auto b = Datalink::server("127.0.0.1:0", 5000);
  REQUIRE(a);
  REQUIRE(b);
  auto ca = Datalink::client("127.0.0.1", a->port(), 5000);
  REQUIRE(ca);
  dl::Databridge bridge(*a, *b);
  // b has no peer yet: the bridge must hold what ca sends.
  for (int i = 0; i < 50; ++i) {
    std::string s = "to-b " + std::to_string(i);
    REQUIRE(ca->write(s.data(), s.size(), i));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto cb = Datalink::client("127.0.0.1", b->port(), 5000);
  REQUIRE(cb);
  for (int i = 0; i < 50; ++i) {
    auto r = cb->read(5000);
    REQUIRE(r);
    CHECK(text(*r) == "to-b " + std::to_string(i));
    CHECK(r->timestamp == i);
  }
  REQUIRE(cb->write("to-a", 4, 7.0));
  auto r = ca->read(5000);
  REQUIRE(r);
  CHECK(text(*r) == "to-a");
  CHECK(bridge.forwarded() == 51);
  // Closing a link closes the bridge first; the bridge object stays safe to destroy.
  a->close();
  bridge.close();
}

TEST_CASE("factory errors") {
  dl::Error e;
  CHECK_FALSE(Datalink::server("not an endpoint:::", 1000, {}, &e));
  CHECK(e.kind == dl::ErrorKind::usage);
  auto s = Datalink::server("127.0.0.1:0", 1000);
  REQUIRE(s);
  dl::Error e2;
  CHECK_FALSE(Datalink::server("127.0.0.1:" + std::to_string(s->port()), 1000, {}, &e2));
  CHECK(e2.kind == dl::ErrorKind::connect);
  DatalinkOptions o;
  o.proto = dl::Proto::automatic;
  CHECK_FALSE(Datalink::client("127.0.0.1", 9, 1000, o));
}

TEST_CASE("a client keeps dialling until the server appears (reconnect forever)") {
  // Find a free port, then start the client first.
  std::uint16_t port;
  {
    auto probe = Datalink::server("127.0.0.1:0", 1000);
    REQUIRE(probe);
    port = probe->port();
  }
  auto client = Datalink::client("127.0.0.1", port, 5000);
  REQUIRE(client);
  REQUIRE(client->write("early", 5, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK_FALSE(client->is_ready());
  auto server = Datalink::server("127.0.0.1:" + std::to_string(port), 5000);
  REQUIRE(server);
  auto r = server->read(10000);
  REQUIRE(r);
  CHECK(text(*r) == "early");
}

TEST_CASE("several writer threads and a reader thread on one link") {
  Pair p;
  constexpr int kThreads = 4, kEach = 500;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string s = std::to_string(t) + ":" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 97) * 100, 'z');
        CHECK(p.client->write(s.data(), s.size(), t));
      }
    });
  }
  std::vector<int> next(kThreads, 0);
  int got = 0;
  while (got < kThreads * kEach) {
    auto r = p.server->read(5000);
    REQUIRE(r);
    std::string s = text(*r);
    int t = std::stoi(s.substr(0, s.find(':')));
    int i = std::stoi(s.substr(s.find(':') + 1));
    CHECK(i == next[static_cast<std::size_t>(t)]);  // per-writer order holds
    next[static_cast<std::size_t>(t)] = i + 1;
    CHECK(r->timestamp == t);
    ++got;
  }
  for (auto& w : writers) w.join();
}
