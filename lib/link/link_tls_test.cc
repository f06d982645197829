// Links with keys, both ends in one process over loopback: the Link only ever adopts connections
// whose TLS handshake is done below it (SecureConnector dialing, SessionListener's TlsGate
// listening). Messages cross forced reconnects exactly once, each reconnect resuming TLS from a
// ticket; a wrong key ends the dialer at once with auth (no redial); a plain dialer at a keyed
// listener is told the listener speaks TLS.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "lib/link/link.h"
#include "lib/net/net_testing.h"
#include "lib/net/tls_testing.h"

using namespace dl;
using namespace dl::testing;

namespace {

struct Watcher : LinkObserver {
  Link* link = nullptr;
  std::vector<std::string> got, connected;
  std::optional<Error> closed_with;
  bool closed = false;
  int retries = 0;
  void on_readable() override {
    // Everything waiting, by index, then released at once; until a peek finds nothing (that
    // peek is what takes in the peer's END behind the last message).
    Message m;
    for (std::size_t n = 1; link && n > 0;) {
      for (n = 0; link->peek(m, n); ++n) got.emplace_back(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
      if (n > 0) link->consume(n);
    }
  }
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override {
    if (e == LinkEvent::connected || e == LinkEvent::resumed) connected.push_back(detail);
    if (e == LinkEvent::retrying) ++retries;
    if (e == LinkEvent::closed) {
      closed = true;
      if (why) closed_with = *why;
    }
  }
};

LinkOptions listen_opts(const std::string& psk) {
  LinkOptions o;
  o.listen = true;
  o.endpoint = *parse_listen_endpoint("127.0.0.1:0");
  o.wait_s = 10;
  o.linger_ms = 200;
  o.receive_only = true;
  if (!psk.empty()) o.tls.psk_file = psk;
  return o;
}

LinkOptions dial_opts(const Link& server, const std::string& psk) {
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(server.local_address())));
  o.wait_s = 10;
  o.linger_ms = 200;
  o.backoff.initial = std::chrono::milliseconds(5);
  if (!psk.empty()) o.tls.psk_file = psk;
  return o;
}

}  // namespace

TEST_CASE("with keys: exactly once across reconnects, each one resuming TLS") {
  Reactor r;
  Watcher rx, tx;
  Link server(r, listen_opts(psk_file("lt-a1.psk", kKeyA)), &rx);
  rx.link = &server;
  REQUIRE(server.start());
  Link client(r, dial_opts(server, psk_file("lt-a2.psk", kKeyA)), &tx);
  REQUIRE(client.start());

  const int kCount = 300;
  int sent = 0, drops = 0;
  bool done = run_until(r, [&] {
    // A batch per connection: the next one goes once the last arrived and the connection was cut.
    int limit = std::min(kCount, (drops + 1) * 75);
    while (sent < limit) {
      std::string m = "m" + std::to_string(sent);
      if (!client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, 0)) break;
      ++sent;
    }
    if (drops < 3 && rx.got.size() == static_cast<std::size_t>(limit) && client.ready()) {
      client.abort_connection();
      ++drops;
    }
    if (sent == kCount) client.finish();
    return rx.got.size() == static_cast<std::size_t>(kCount) && client.finished();
  });
  INFO("got " << rx.got.size() << " of " << sent << " sent, " << drops << " drops");
  REQUIRE(done);
  for (int i = 0; i < kCount; ++i) CHECK(rx.got[static_cast<std::size_t>(i)] == "m" + std::to_string(i));
  CHECK(drops == 3);
  REQUIRE(tx.connected.size() == 4);
  CHECK(tx.connected[0].find("TLS psk 'datalink'") != std::string::npos);
  for (std::size_t i = 1; i < tx.connected.size(); ++i) CHECK(tx.connected[i].find("TLS resumed") != std::string::npos);
}

TEST_CASE("a wrong key ends the dialer with auth: at once without a wait, after three refusals with one") {
  // Before the listener ever accepted it, a refusal may be a bit flipped on the path: a dialer
  // with time for its first connect tries twice more, and no more.
  for (double wait : {0.0, 10.0}) {
    CAPTURE(wait);
    Reactor r;
    Watcher rx, tx;
    Link server(r, listen_opts(psk_file("lt-b1.psk", kKeyA)), &rx);
    REQUIRE(server.start());
    LinkOptions o = dial_opts(server, psk_file("lt-b2.psk", kKeyB));
    o.wait_s = wait;
    Link client(r, o, &tx);
    REQUIRE(client.start());
    REQUIRE(run_until(r, [&] { return client.closed(); }));
    REQUIRE(client.failure());
    CHECK(client.failure()->kind == ErrorKind::auth);
    CHECK(client.failure()->message().find("wrong pre-shared key") != std::string::npos);
    CHECK(client.stats().connections == 0);
    CHECK(tx.retries == (wait > 0 ? 2 : 0));
    CHECK(server.ready() == false);
  }
}

TEST_CASE("a plain dialer at a keyed listener is told the listener speaks TLS") {
  Reactor r;
  Watcher rx, tx;
  Link server(r, listen_opts(psk_file("lt-c.psk", kKeyA)), &rx);
  REQUIRE(server.start());
  Link client(r, dial_opts(server, ""), &tx);
  REQUIRE(client.start());
  REQUIRE(run_until(r, [&] { return client.closed(); }));
  REQUIRE(client.failure());
  CHECK(client.failure()->kind == ErrorKind::auth);
  CHECK(client.failure()->message().find("the listener speaks TLS: it needs keys") != std::string::npos);
}
