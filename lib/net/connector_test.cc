#include "lib/net/connector.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "lib/net/net.h"

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

ConnectorOptions fast(Clock::duration wait) {
  ConnectorOptions o;
  o.backoff.initial = 10ms;
  o.backoff.max = 50ms;
  o.deadline = wait == Clock::duration::max() ? Clock::time_point::max() : Clock::now() + wait;
  return o;
}

// A port on 127.0.0.1 that refuses: bound but never listening, so nobody else can take it.
struct RefusingPort {
  Fd fd;
  std::uint16_t port = 0;
  RefusingPort() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
};

}  // namespace

TEST_CASE("dials a listening address") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(l->local))), fast(5s),
              [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK((*got)->fd.valid());
  CHECK((*got)->peer.to_string() == "127.0.0.1:" + std::to_string(port_of(l->local)));
  CHECK(!c.active());
}

TEST_CASE("a refused port is retried until the deadline, with a last round at it") {
  Reactor r;
  RefusingPort closed;
  std::optional<Result<Connected>> got;
  auto start = Clock::now();
  Connector c(r, *parse_dial_endpoint("127.0.0.1:" + std::to_string(closed.port)), fast(300ms),
              [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  auto took = Clock::now() - start;
  REQUIRE(!*got);
  CHECK(got->error().kind == ErrorKind::connect);
  CHECK(got->error().message() == "connect 127.0.0.1:" + std::to_string(closed.port) + ": Connection refused");
  CHECK(c.rounds() >= 3);
  CHECK(took >= 300ms);
  CHECK(took < 2s);
}

TEST_CASE("a listener that appears later is found (deadline inf)") {
  Reactor r;
  std::string path = "/tmp/dl_connector_test_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("unix:" + path), fast(Clock::duration::max()),
              [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  std::optional<Listener> l;
  r.at(Clock::now() + 150ms, [&] {
    auto ll = listen_on(*parse_listen_endpoint("unix:" + path));
    REQUIRE(ll);
    l = std::move(*ll);
  });
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK(c.rounds() >= 2);
}

TEST_CASE("every round resolves again and tries each address in order") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  RefusingPort closed;
  int calls = 0;
  auto at = [](std::uint16_t port) {
    return resolve(*parse_dial_endpoint("127.0.0.1:" + std::to_string(port)), false)->front();
  };
  ConnectorOptions o = fast(5s);
  o.resolver = [&](const Endpoint&) -> Result<std::vector<SocketAddress>> {
    ++calls;
    // The name "moves": two dead addresses at first, then a dead one before the live one.
    if (calls == 1) return std::vector<SocketAddress>{at(closed.port), at(closed.port)};
    return std::vector<SocketAddress>{at(closed.port), at(port_of(l->local))};
  };
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("service.example:1"), o, [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK(calls == 2);
  CHECK(port_of((*got)->peer) == port_of(l->local));
}

TEST_CASE("a name that never resolves fails at once; a later failure is retried") {
  Reactor r;
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("no-such-host.invalid:1"), fast(Clock::duration::max()),
              [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  REQUIRE(run_until(r, [&] { return got.has_value(); }, 20s));
  REQUIRE(!*got);
  CHECK(got->error().kind == ErrorKind::resolve);

  RefusingPort closed;
  int calls = 0;
  ConnectorOptions o = fast(200ms);
  o.resolver = [&](const Endpoint& ep) -> Result<std::vector<SocketAddress>> {
    if (++calls == 2) return make_error(ErrorKind::resolve, "resolve " + ep.host, "temporary failure");
    return resolve(*parse_dial_endpoint("127.0.0.1:" + std::to_string(closed.port)), false);
  };
  got.reset();
  Connector c2(r, *parse_dial_endpoint("flaky.example:1"), o, [&](Result<Connected> res) { got = std::move(res); });
  c2.start();
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  CHECK(calls > 2);
  CHECK(got->error().kind == ErrorKind::connect);
}

TEST_CASE("host names resolve off the reactor thread") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("localhost:" + std::to_string(port_of(l->local))), fast(5s),
              [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  CHECK(!got.has_value());  // the lookup is in flight: start() did not wait for it
  REQUIRE(run_until(r, [&] { return got.has_value(); }));
  CHECK(*got);
}

TEST_CASE("cancel and destruction mid-dial call nothing") {
  Reactor r;
  bool called = false;
  {
    Connector c(r, *parse_dial_endpoint("localhost:9"), fast(5s), [&](Result<Connected>) { called = true; });
    c.start();  // destroyed while the resolver thread still runs
  }
  RefusingPort closed;
  Connector c(r, *parse_dial_endpoint("127.0.0.1:" + std::to_string(closed.port)), fast(5s),
              [&](Result<Connected>) { called = true; });
  c.start();
  c.cancel();
  CHECK(!c.active());
  auto end = Clock::now() + 200ms;
  while (Clock::now() < end) r.run_once(20ms);
  CHECK(!called);
}

TEST_CASE("a udp endpoint is not dialed as a stream") {
  Reactor r;
  std::optional<Result<Connected>> got;
  Connector c(r, *parse_dial_endpoint("udp:127.0.0.1:9"), fast(1s), [&](Result<Connected> res) { got = std::move(res); });
  c.start();
  REQUIRE(got.has_value());
  REQUIRE(!*got);
  CHECK(got->error().kind == ErrorKind::usage);
}
