#include "lib/net/endpoint.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

using namespace dl;

TEST_CASE("dial endpoints") {
  auto a = parse_dial_endpoint("127.0.0.1:9000");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 9000);
  auto b = parse_dial_endpoint("[::1]:80");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "[::1]:80");
  auto c = parse_dial_endpoint("example.org:443");
  REQUIRE(c);
  CHECK(c->host == "example.org");
  auto u = parse_dial_endpoint("unix:/tmp/x.sock");
  REQUIRE(u);
  CHECK(u->kind == Endpoint::Kind::unix_socket);
  CHECK(u->path == "/tmp/x.sock");
}

TEST_CASE("dial endpoint errors name the problem") {
  for (const char* bad : {"9000", "host:", "host:65536", "host:0", ":9000", "::1:80", "[::1]80", "[::1", "unix:", "h:x1"}) {
    auto r = parse_dial_endpoint(bad);
    CHECK_MESSAGE(!r, bad);
    if (!r) {
      CHECK(r.error().kind == ErrorKind::usage);
      CHECK(!r.error().detail.empty());
    }
  }
}

TEST_CASE("listen endpoints") {
  auto a = parse_listen_endpoint("0");
  REQUIRE(a);
  CHECK(a->host.empty());
  CHECK(a->port == 0);
  CHECK(a->to_string() == "*:0");
  auto b = parse_listen_endpoint("127.0.0.1:0");
  REQUIRE(b);
  CHECK(b->host == "127.0.0.1");
  auto c = parse_listen_endpoint(":7000");
  REQUIRE(c);
  CHECK(c->port == 7000);
  CHECK(!parse_listen_endpoint("70000"));
}

TEST_CASE("resolve literal and localhost") {
  auto r = resolve(*parse_dial_endpoint("127.0.0.1:5"), false);
  REQUIRE(r);
  CHECK(r->front().to_string() == "127.0.0.1:5");
  auto v6 = resolve(*parse_dial_endpoint("[::1]:6"), false);
  REQUIRE(v6);
  CHECK(v6->front().to_string() == "[::1]:6");
  auto bad = resolve(*parse_dial_endpoint("no-such-host.invalid:1"), false);
  CHECK(!bad);
  CHECK(bad.error().kind == ErrorKind::resolve);
}

TEST_CASE("udp endpoints in the same grammar") {
  auto a = parse_dial_endpoint("udp:127.0.0.1:53");
  REQUIRE(a);
  CHECK(a->kind == Endpoint::Kind::udp);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 53);
  CHECK(!a->is_stream());
  CHECK(a->to_string() == "udp:127.0.0.1:53");
  auto b = parse_dial_endpoint("udp:[::1]:9");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "udp:[::1]:9");
  auto c = parse_listen_endpoint("udp:9000");
  REQUIRE(c);
  CHECK(c->kind == Endpoint::Kind::udp);
  CHECK(c->host.empty());
  CHECK(c->to_string() == "udp:*:9000");
  auto d = parse_listen_endpoint("udp:127.0.0.1:0");
  REQUIRE(d);
  CHECK(d->host == "127.0.0.1");
  auto e = parse_listen_endpoint("udp:[::1]:0");
  REQUIRE(e);
  CHECK(e->kind == Endpoint::Kind::udp);
  auto t = parse_dial_endpoint("tcp:127.0.0.1:80");
  REQUIRE(t);
  CHECK(t->kind == Endpoint::Kind::tcp);
  CHECK(t->is_stream());
  for (const char* bad : {"udp:", "udp:9000", "udp:host:", "udp:[zz]:1", "udp:host:0"}) {
    CHECK_MESSAGE(!parse_dial_endpoint(bad), bad);
  }
  CHECK(!parse_listen_endpoint("udp:"));
  auto r = resolve(*a, false);
  REQUIRE(r);
  CHECK(r->front().to_string() == "127.0.0.1:53");
}

TEST_CASE("messages name the endpoint and the problem") {
  auto colon = parse_dial_endpoint(":");
  REQUIRE(!colon);
  CHECK(colon.error().message() == "endpoint ':': empty host and port (expected HOST:PORT, [IPV6]:PORT or unix:PATH)");
  CHECK(colon.error().message().find("::") == std::string::npos);

  auto url = parse_dial_endpoint("tcp://127.0.0.1:1");
  REQUIRE(!url);
  CHECK(url.error().message().find("scheme 'tcp://' is not supported") != std::string::npos);
  CHECK(url.error().message().find("brackets") == std::string::npos);

  auto empty = parse_listen_endpoint("");
  REQUIRE(!empty);
  CHECK(empty.error().message() == "listen endpoint '': empty (expected PORT, HOST:PORT, [IPV6]:PORT or unix:PATH)");
  auto udp_empty = parse_dial_endpoint("udp:");
  REQUIRE(!udp_empty);
  CHECK(udp_empty.error().message() == "endpoint 'udp:': empty (expected udp:HOST:PORT)");
  auto empty_dial = parse_dial_endpoint("");
  REQUIRE(!empty_dial);
  CHECK(empty_dial.error().message().starts_with("endpoint '': empty"));

  auto v4b = parse_dial_endpoint("[127.0.0.1]:9");
  REQUIRE(!v4b);
  CHECK(v4b.error().message() == "endpoint '[127.0.0.1]:9': brackets are for IPv6 addresses only; write 127.0.0.1:PORT");
  auto zz = parse_dial_endpoint("[zz]:9");
  REQUIRE(!zz);
  CHECK(zz.error().message() == "endpoint '[zz]:9': 'zz' is not an IPv6 address");
  CHECK(!parse_listen_endpoint("[127.0.0.1]:0"));
  CHECK(!parse_listen_endpoint("[zz]:0"));
  CHECK(!parse_dial_endpoint("[fe80::1%]:9"));

  auto port = parse_dial_endpoint("h:x1");
  REQUIRE(!port);
  CHECK(port.error().message() == "endpoint 'h:x1': bad port 'x1' (expected 0-65535)");
  auto v6 = parse_dial_endpoint("::1:80");
  REQUIRE(!v6);
  CHECK(v6.error().message().find("brackets: [ADDR]:PORT") != std::string::npos);
  CHECK(!parse_dial_endpoint("a b:80"));
}

TEST_CASE("link-local scope is kept") {
  auto ep = parse_dial_endpoint("[fe80::1%lo]:9000");
  REQUIRE(ep);
  CHECK(ep->host == "fe80::1%lo");
  CHECK(ep->to_string() == "[fe80::1%lo]:9000");
  auto r = resolve(*ep, false);
  REQUIRE(r);
  CHECK(r->front().to_string() == "[fe80::1%lo]:9000");
  // A scope the system does not know by name prints as its number.
  SocketAddress a;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(7);
  inet_pton(AF_INET6, "fe80::2", &in6->sin6_addr);
  in6->sin6_scope_id = 4242;
  a.length = sizeof *in6;
  CHECK(a.to_string() == "[fe80::2%4242]:7");
}

TEST_CASE("peers print the way users write them") {
  SocketAddress m;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&m.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(4000);
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr);
  m.length = sizeof *in6;
  CHECK(m.to_string() == "127.0.0.1:4000");

  SocketAddress unnamed;
  unnamed.storage.ss_family = AF_UNIX;
  unnamed.length = sizeof(sa_family_t);
  CHECK(unnamed.to_string() == "unix:(unnamed)");
  unnamed.unix_peer_pid = 42;
  CHECK(unnamed.to_string() == "unix:(unnamed) (pid 42)");

  auto u = resolve(*parse_dial_endpoint("unix:/tmp/x.sock"), false);
  REQUIRE(u);
  CHECK(u->front().to_string() == "unix:/tmp/x.sock");
}

TEST_CASE("a host named like a prefix reads back the same (found by endpoint_fuzz)") {
  auto ep = parse_listen_endpoint("tcp:udp:0");
  REQUIRE(ep);
  CHECK(ep->kind == Endpoint::Kind::tcp);
  CHECK(ep->host == "udp");
  CHECK(ep->to_string() == "tcp:udp:0");
  auto back = parse_listen_endpoint(ep->to_string());
  REQUIRE(back);
  CHECK(back->kind == Endpoint::Kind::tcp);
  CHECK(back->host == "udp");
}
