#include "lib/net/endpoint.h"

#include <doctest/doctest.h>

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
