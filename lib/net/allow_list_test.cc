#include "lib/net/allow_list.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/un.h>

using namespace dl;

namespace {

SocketAddress v4(const char* ip) {
  SocketAddress a;
  auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
  s->sin_family = AF_INET;
  s->sin_port = htons(1234);
  REQUIRE(inet_pton(AF_INET, ip, &s->sin_addr) == 1);
  a.length = sizeof *s;
  return a;
}

SocketAddress v6(const char* ip) {
  SocketAddress a;
  auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(1234);
  REQUIRE(inet_pton(AF_INET6, ip, &s->sin6_addr) == 1);
  a.length = sizeof *s;
  return a;
}

}  // namespace

TEST_CASE("an empty list lets everybody in") {
  AllowList l;
  CHECK(l.empty());
  CHECK(l.allows(v4("203.0.113.9")));
  CHECK(l.allows(v6("2001:db8::1")));
}

TEST_CASE("IPv4 rules match plain and v4-mapped peers") {
  auto l = AllowList::parse({"10.0.0.0/8", "192.0.2.7"});
  REQUIRE(l);
  CHECK(!l->empty());
  CHECK(l->allows(v4("10.1.2.3")));
  CHECK(l->allows(v6("::ffff:10.200.0.1")));
  CHECK(l->allows(v4("192.0.2.7")));
  CHECK(!l->allows(v4("192.0.2.8")));
  CHECK(!l->allows(v4("11.0.0.1")));
  CHECK(!l->allows(v6("::ffff:11.0.0.1")));
  CHECK(!l->allows(v6("::a00:1")));  // IPv4-compatible, not mapped: a different address
  CHECK(!l->allows(v6("2001:db8::1")));
  CHECK(l->to_string() == "10.0.0.0/8, 192.0.2.7/32");
}

TEST_CASE("IPv6 rules, v4-mapped rules, brackets and odd prefixes") {
  auto l = AllowList::parse({"2001:db8::/32", "[::1]", "::ffff:127.0.0.0/104"});
  REQUIRE(l);
  CHECK(l->allows(v6("2001:db8:ffff::5")));
  CHECK(!l->allows(v6("2001:db9::5")));
  CHECK(l->allows(v6("::1")));
  CHECK(!l->allows(v6("::2")));
  CHECK(l->allows(v4("127.5.5.5")));
  CHECK(l->allows(v6("::ffff:127.0.0.1")));
  auto odd = AllowList::parse({"10.1.2.3/9", "fe80::/10", "0.0.0.0/0"});
  REQUIRE(odd);
  CHECK(odd->allows(v4("10.127.0.0")));
  CHECK(odd->allows(v6("febf::1")));
  CHECK(odd->allows(v4("8.8.8.8")));  // /0: everything IPv4
  CHECK(!odd->allows(v6("2001:db8::1")));
  CHECK(odd->to_string() == "10.0.0.0/9, fe80::/10, 0.0.0.0/0");
}

TEST_CASE("unix peers pass: the file permissions decide") {
  auto l = AllowList::parse({"10.0.0.1"});
  REQUIRE(l);
  SocketAddress u;
  u.storage.ss_family = AF_UNIX;
  u.length = sizeof(sa_family_t);
  CHECK(l->allows(u));
}

TEST_CASE("bad specs name the problem") {
  for (const char* bad : {"", "host.example", "10.0.0.1/33", "::1/129", "10.0.0.1/", "10.0.0.1/x",
                          "10.0.0/8", "10.0.0.1/-1", "fe80::1%eth0", "1.2.3.4 "}) {
    auto l = AllowList::parse({bad});
    CHECK_MESSAGE(!l, bad);
    if (!l) {
      CHECK(l.error().kind == ErrorKind::usage);
      CHECK(l.error().message().starts_with("--allow '" + std::string(bad) + "': "));
    }
  }
}
