// Which newcomer makes room: the oldest of the source holding the most, with IPv4-mapped IPv6
// counted as its IPv4 address, an IPv6 /64 as one source, and unix peers as one.
#include "lib/net/evict.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <string>
#include <vector>

using namespace dl;

namespace {

SocketAddress addr(const std::string& text) {
  auto r = resolve(*parse_dial_endpoint(text), false);
  REQUIRE(r);
  REQUIRE(!r->empty());
  return r->front();
}

SocketAddress unix_peer() {
  SocketAddress a;
  a.storage.ss_family = AF_UNIX;
  a.length = sizeof(sa_family_t);
  return a;
}

}  // namespace

TEST_CASE("the oldest of the busiest source goes, not the oldest of all") {
  std::vector<SocketAddress> peers = {addr("127.0.0.5:1"), addr("127.0.0.2:1"), addr("127.0.0.2:2"),
                                      addr("127.0.0.2:3"), addr("127.0.0.5:2")};
  CHECK(evictee(peers) == 1);
}

TEST_CASE("a tie goes to the source whose run sorts first; one source: the oldest") {
  std::vector<SocketAddress> one = {addr("127.0.0.9:1"), addr("127.0.0.9:2"), addr("127.0.0.9:3")};
  CHECK(evictee(one) == 0);
  CHECK(evictee({}) == 0);
}

TEST_CASE("an IPv6 /64 is one source, IPv4-mapped IPv6 is its IPv4 address, unix peers are one") {
  std::vector<SocketAddress> v6 = {addr("[2001:db8::1]:1"), addr("[2001:db8:0:1::1]:1"), addr("[2001:db8::2]:1"),
                                   addr("[2001:db8::3]:1")};
  CHECK(evictee(v6) == 0);  // 2001:db8::/64 holds three
  std::vector<SocketAddress> mapped = {addr("127.0.0.7:1"), addr("127.0.0.8:1"), addr("[::ffff:127.0.0.8]:2")};
  CHECK(evictee(mapped) == 1);
  std::vector<SocketAddress> mixed = {addr("127.0.0.7:1"), unix_peer(), unix_peer()};
  CHECK(evictee(mixed) == 1);
}
