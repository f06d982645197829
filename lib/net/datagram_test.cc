// Loopback tests for the datagram layer: batches with and without segmentation offload
// arrive as the same datagrams, in order and whole.
#include <doctest/doctest.h>
#include <poll.h>

#include <cstring>
#include <vector>

#include "lib/net/datagram.h"

using namespace dl;

namespace {
// Collects every datagram (split at segment boundaries) until `want` arrived or 2 s passed.
std::vector<std::vector<std::uint8_t>> drain(DatagramSocket& s, RecvBatch& rb, std::size_t want) {
  std::vector<std::vector<std::uint8_t>> got;
  for (int spins = 0; got.size() < want && spins < 200; ++spins) {
    pollfd p{s.fd.get(), POLLIN, 0};
    ::poll(&p, 1, 10);
    auto n = rb.receive(s.fd.get());
    REQUIRE(n.ok());
    for (std::size_t i = 0; i < *n; ++i) {
      auto m = rb.message(i);
      std::size_t seg = rb.segment_size(i);
      for (std::size_t off = 0; off < m.size(); off += seg) {
        std::size_t len = std::min(seg, m.size() - off);
        got.emplace_back(m.begin() + off, m.begin() + off + len);
      }
    }
  }
  return got;
}

void exchange(bool gso, bool gro) {
  auto ep = parse_listen_endpoint("127.0.0.1:0");
  REQUIRE(ep.ok());
  auto server = bind_datagram(*ep, 4 << 20);
  REQUIRE(server.ok());
  auto client = dial_datagram(server->local, 4 << 20);
  REQUIRE(client.ok());
  enable_gro(*server, gro);
  if (!gso) client->gso = false;
  SendBatch sb(4);
  // Three slots: 10 datagrams of 1000 bytes + a short one, a single datagram, 5 x 500.
  for (int slot = 0; slot < 3; ++slot) {
    std::uint8_t* p = sb.next_slot();
    std::size_t seg = slot == 0 ? 1000 : slot == 1 ? 0 : 500;
    std::size_t len = slot == 0 ? 10300 : slot == 1 ? 77 : 2500;
    for (std::size_t i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(slot * 50 + i / 100);
    sb.commit(len, seg, nullptr);
  }
  auto sent = sb.flush(*client);
  REQUIRE(sent.ok());
  CHECK(*sent == 11 + 1 + 5);
  CHECK(sb.empty());
  RecvBatch rb(8, 65536);
  auto got = drain(*server, rb, 17);
  REQUIRE(got.size() == 17);
  CHECK(got[0].size() == 1000);
  CHECK(got[10].size() == 300);
  CHECK(got[10][0] == static_cast<std::uint8_t>(100));
  CHECK(got[11].size() == 77);
  CHECK(got[12].size() == 500);
  CHECK(got[16][0] == static_cast<std::uint8_t>(100 + 20));
}
}  // namespace

TEST_CASE("segmented batches arrive as the same datagrams, with and without offload") {
  exchange(true, true);
  exchange(true, false);
  exchange(false, true);
  exchange(false, false);
}

TEST_CASE("nothing pending: receive returns 0 at once; a closed peer port is reported") {
  auto ep = parse_listen_endpoint("127.0.0.1:0");
  auto server = bind_datagram(*ep, 1 << 20);
  REQUIRE(server.ok());
  RecvBatch rb(4, 2048);
  auto n = rb.receive(server->fd.get());
  REQUIRE(n.ok());
  CHECK(*n == 0);
  SocketAddress gone = server->local;
  server->fd.reset();
  auto client = dial_datagram(gone, 1 << 20);
  REQUIRE(client.ok());
  std::uint8_t b[8] = {};
  (void)send_datagram(client->fd.get(), b, nullptr);
  pollfd p{client->fd.get(), POLLIN, 0};
  ::poll(&p, 1, 1000);
  auto r = rb.receive(client->fd.get());
  CHECK_FALSE(r.ok());
  if (!r.ok()) CHECK(r.error().kind == ErrorKind::connect);
}
