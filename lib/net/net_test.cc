#include "lib/net/net.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

using namespace dl;

namespace {

// Accepts one connection, waiting up to a second for it.
Fd accept_wait(const Listener& l, SocketAddress* peer) {
  pollfd p{l.fd.get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 1000) == 1);
  auto fd = accept_one(l.fd.get(), peer);
  REQUIRE(fd);
  REQUIRE(fd->valid());
  return std::move(*fd);
}

std::string temp_path(const char* name) {
  return "/tmp/dl_net_test_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace

TEST_CASE("an IPv4 peer of a dual-stack listener prints as IPv4") {
  auto l = listen_on(*parse_listen_endpoint("0"));
  REQUIRE(l);
  auto target = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(l->local)));
  auto addrs = resolve(target, false);
  REQUIRE(addrs);
  auto c = start_connect(addrs->front());
  REQUIRE(c);
  SocketAddress peer;
  Fd s = accept_wait(*l, &peer);
  CHECK(peer.to_string().starts_with("127.0.0.1:"));
}

TEST_CASE("a unix peer prints as the socket it came through and its pid") {
  std::string path = temp_path("peer.sock");
  ::unlink(path.c_str());
  auto l = listen_on(*parse_listen_endpoint("unix:" + path));
  REQUIRE(l);
  auto addrs = resolve(*parse_dial_endpoint("unix:" + path), false);
  REQUIRE(addrs);
  auto c = start_connect(addrs->front());
  REQUIRE(c);
  SocketAddress peer;
  Fd s = accept_wait(*l, &peer);
  CHECK(peer.to_string() == "unix:" + path + " (pid " + std::to_string(::getpid()) + ")");
}

TEST_CASE("a udp endpoint cannot be listened on as a stream") {
  auto l = listen_on(*parse_listen_endpoint("udp:127.0.0.1:0"));
  REQUIRE(!l);
  CHECK(l.error().kind == ErrorKind::usage);
}
