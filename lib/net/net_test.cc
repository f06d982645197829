#include "lib/net/net.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

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

TEST_CASE("peers on loopback and unix sockets are local; an unconnected socket is not") {
  for (const char* where : {"127.0.0.1:0", "[::1]:0"}) {
    CAPTURE(where);
    auto l = listen_on(*parse_listen_endpoint(where));
    if (!l) continue;  // no IPv6 here
    auto target = *parse_dial_endpoint(l->local.to_string());
    auto addrs = resolve(target, false);
    REQUIRE(addrs);
    auto c = start_connect(addrs->front());
    REQUIRE(c);
    Fd s = accept_wait(*l, nullptr);
    CHECK(peer_is_local(s.get()));
    CHECK(peer_is_local(c->get()));
    CHECK_FALSE(peer_is_local(l->fd.get()));  // listening: no peer
  }
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  Fd a(sv[0]), b(sv[1]);
  CHECK(peer_is_local(a.get()));
  Fd fresh(::socket(AF_INET, SOCK_STREAM, 0));
  CHECK_FALSE(peer_is_local(fresh.get()));
  CHECK_FALSE(peer_is_local(-1));
}

TEST_CASE("a udp endpoint cannot be listened on as a stream") {
  auto l = listen_on(*parse_listen_endpoint("udp:127.0.0.1:0"));
  REQUIRE(!l);
  CHECK(l.error().kind == ErrorKind::usage);
}

TEST_CASE("unix listen: only a stale socket is replaced, anything else is left alone") {
  std::string base = temp_path("busy");
  auto ep = *parse_listen_endpoint("unix:" + base);
  // A regular file with content.
  ::unlink(base.c_str());
  {
    Fd f(::open(base.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    REQUIRE(::write(f.get(), "keep me", 7) == 7);
  }
  auto l = listen_on(ep);
  REQUIRE(!l);
  CHECK(l.error().kind == ErrorKind::connect);
  CHECK(l.error().message() == "listen unix:" + base + ": a regular file is in the way (only a stale socket is replaced)");
  char buf[16] = {};
  Fd f(::open(base.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(f.valid());
  CHECK(::read(f.get(), buf, sizeof buf) == 7);
  ::unlink(base.c_str());
  // A directory.
  REQUIRE(::mkdir(base.c_str(), 0700) == 0);
  l = listen_on(ep);
  REQUIRE(!l);
  CHECK(l.error().message().find("a directory is in the way") != std::string::npos);
  struct stat st{};
  CHECK(::stat(base.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  ::rmdir(base.c_str());
  // A symbolic link, dangling or not.
  REQUIRE(::symlink("/nonexistent/target", base.c_str()) == 0);
  l = listen_on(ep);
  REQUIRE(!l);
  CHECK(l.error().message().find("a symbolic link is in the way") != std::string::npos);
  CHECK(::lstat(base.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  ::unlink(base.c_str());
  // A stale socket (bound, nobody listening) is replaced.
  {
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto addr = resolve(*parse_dial_endpoint("unix:" + base), false);
    REQUIRE(::bind(s.get(), addr->front().get(), addr->front().length) == 0);
  }
  l = listen_on(ep);
  REQUIRE(l);
  // A live one is not.
  auto again = listen_on(ep);
  REQUIRE(!again);
  CHECK(again.error().message().find("another process is listening on it") != std::string::npos);
  // The listener removes its own socket, and only its own.
  l = make_error(ErrorKind::io, "reset");
  CHECK(::lstat(base.c_str(), &st) != 0);
}

TEST_CASE("a listener does not remove a file that replaced its socket") {
  std::string base = temp_path("replaced");
  ::unlink(base.c_str());
  {
    auto l = listen_on(*parse_listen_endpoint("unix:" + base));
    REQUIRE(l);
    ::unlink(base.c_str());
    Fd f(::open(base.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  }
  struct stat st{};
  CHECK(::lstat(base.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  ::unlink(base.c_str());
}

TEST_CASE("a full unix backlog is a failed connect, not one in progress") {
  std::string path = temp_path("full.sock");
  ::unlink(path.c_str());
  auto l = listen_on(*parse_listen_endpoint("unix:" + path), 1);
  REQUIRE(l);
  auto addr = resolve(*parse_dial_endpoint("unix:" + path), false);
  REQUIRE(addr);
  std::vector<Fd> queued;
  Result<Fd> c = Fd();
  for (int i = 0; i < 64; ++i) {
    c = start_connect(addr->front());
    if (!c) break;
    queued.push_back(std::move(*c));
  }
  REQUIRE(!c);  // nobody accepts: the backlog fills and connect says so
  CHECK(c.error().kind == ErrorKind::connect);
  CHECK(c.error().sys_errno == EAGAIN);
}
