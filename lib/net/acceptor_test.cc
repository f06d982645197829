#include "lib/net/acceptor.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>
#include <vector>

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

Fd dial(const SocketAddress& local) {
  auto addrs = resolve(*parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(local))), false);
  REQUIRE(addrs);
  auto fd = start_connect(addrs->front());
  REQUIRE(fd);
  return std::move(*fd);
}

}  // namespace

TEST_CASE("hands out accepted connections with their peers") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  std::vector<Accepted> got;
  Acceptor a(r, std::move(*l), {}, [&](Accepted c) { got.push_back(std::move(c)); });
  Fd c1 = dial(a.local()), c2 = dial(a.local());
  REQUIRE(run_until(r, [&] { return got.size() == 2; }));
  CHECK(got[0].fd.valid());
  CHECK(got[0].peer.to_string().starts_with("127.0.0.1:"));
  CHECK(a.accepted() == 2);
}

TEST_CASE("peers outside the allow list are reset before a byte is read") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  AcceptorOptions o;
  o.allow = *AllowList::parse({"10.0.0.0/8", "::1"});
  int accepted = 0;
  std::vector<std::string> events;
  Acceptor a(r, std::move(*l), std::move(o), [&](Accepted) { ++accepted; },
             [&](const Error& e, const SocketAddress* peer) {
               CHECK(peer != nullptr);
               CHECK(e.kind == ErrorKind::auth);
               events.push_back(e.message());
             });
  Fd c = dial(a.local());
  REQUIRE(run_until(r, [&] { return a.refused() == 1; }));
  CHECK(accepted == 0);
  REQUIRE(events.size() == 1);
  CHECK(events[0].starts_with("connection from 127.0.0.1:"));
  CHECK(events[0].ends_with(": refused: not in the --allow list"));
  pollfd p{c.get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 1000) == 1);
  char b;
  CHECK(::read(c.get(), &b, 1) <= 0);  // reset (or closed): nothing was said to it
}

TEST_CASE("out of descriptors: pauses instead of spinning, then accepts") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  AcceptorOptions o;
  o.pause_on_exhaustion = 100ms;
  int accepted = 0, failures = 0;
  Acceptor a(r, std::move(*l), std::move(o), [&](Accepted) { ++accepted; },
             [&](const Error& e, const SocketAddress* peer) {
               CHECK(peer == nullptr);
               CHECK(e.sys_errno == EMFILE);
               ++failures;
             });
  r.run_once(1ms);
  auto target = resolve(*parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(a.local()))), false);
  REQUIRE(target);
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  // Fill every descriptor but one, which the client takes: accept then hits EMFILE.
  std::vector<Fd> hogs;
  rlimit low = old;
  low.rlim_cur = 256;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  for (;;) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    hogs.emplace_back(fd);
  }
  hogs.pop_back();
  auto c = start_connect(target->front());
  REQUIRE(c);
  int rounds = 0;
  auto start = Clock::now();
  while (Clock::now() - start < 250ms) {
    r.run_once(50ms);
    ++rounds;
  }
  CHECK(accepted == 0);
  CHECK(failures == 1);  // said once per shortage, not once per 100 ms retry
  CHECK(rounds < 30);
  hogs.clear();
  ::setrlimit(RLIMIT_NOFILE, &old);
  REQUIRE(run_until(r, [&] { return accepted == 1; }));
}

TEST_CASE("listen() opens the socket and the acceptor together") {
  Reactor r;
  int accepted = 0;
  auto a = Acceptor::listen(r, *parse_listen_endpoint("127.0.0.1:0"), {}, [&](Accepted) { ++accepted; });
  REQUIRE(a);
  Fd c = dial((*a)->local());
  REQUIRE(run_until(r, [&] { return accepted == 1; }));
  auto bad = Acceptor::listen(r, *parse_listen_endpoint("udp:0"), {}, [](Accepted) {});
  REQUIRE(!bad);
  CHECK(bad.error().kind == ErrorKind::usage);
}

TEST_CASE("pause and resume") {
  Reactor r;
  auto l = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
  REQUIRE(l);
  int accepted = 0;
  Acceptor a(r, std::move(*l), {}, [&](Accepted) { ++accepted; });
  a.pause();
  Fd c = dial(a.local());
  for (int i = 0; i < 5; ++i) r.run_once(10ms);
  CHECK(accepted == 0);
  a.resume();
  REQUIRE(run_until(r, [&] { return accepted == 1; }));
}
