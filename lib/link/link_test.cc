#include "lib/link/link.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace dl;

namespace {

// Runs the reactor until pred() or a bounded number of rounds (each bounded in time).
template <class Pred>
bool run_until(Reactor& r, Pred pred, int rounds = 20000) {
  for (int i = 0; i < rounds && !pred(); ++i) r.run_once(std::chrono::milliseconds(50));
  return pred();
}

struct Collector : LinkObserver {
  Link* link = nullptr;
  std::vector<std::string> got;
  std::vector<double> stamps;
  void on_readable() override {
    Message m;
    while (link && link->peek(m)) {
      got.emplace_back(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
      stamps.push_back(m.timestamp);
      link->consume();
    }
  }
};

LinkOptions listen_opts(Proto p = Proto::native) {
  LinkOptions o;
  o.listen = true;
  o.endpoint = *parse_listen_endpoint("127.0.0.1:0");
  o.proto = p;
  o.wait_s = 10;
  o.linger_ms = 200;
  return o;
}

LinkOptions dial_opts(const Link& server, Proto p = Proto::native) {
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(server.local_address())));
  o.proto = p;
  o.wait_s = 10;
  o.linger_ms = 200;
  o.backoff.initial = std::chrono::milliseconds(5);
  return o;
}

}  // namespace

TEST_CASE("native: in order, exactly once, across forced reconnects") {
  Reactor r;
  Collector rx;
  LinkOptions lo = listen_opts();
  lo.receive_only = true;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  LinkOptions so = dial_opts(server);
  so.window = 64 * 1024;  // small ring: forces backpressure and many acks
  Collector ignore;
  Link client(r, so, &ignore);
  ignore.link = &client;
  REQUIRE(client.start());

  const int kCount = 3000;
  int sent = 0;
  int drops = 0;
  bool ok = run_until(r, [&] {
    while (sent < kCount) {
      std::string m = "message-" + std::to_string(sent) + std::string(static_cast<std::size_t>(sent % 700), 'x');
      if (!client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, sent + 0.5)) break;
      ++sent;
    }
    // Cut the connection a few times while data is in flight.
    if (drops < 4 && rx.got.size() > static_cast<std::size_t>(drops + 1) * 500 && client.ready()) {
      (drops % 2 ? server : client).abort_connection();
      ++drops;
    }
    if (sent == kCount) client.finish();
    return client.completed() && server.completed();
  });
  REQUIRE(ok);
  CHECK(drops == 4);
  REQUIRE(rx.got.size() == kCount);
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(rx.got[static_cast<std::size_t>(i)].starts_with("message-" + std::to_string(i)));
    REQUIRE(rx.stamps[static_cast<std::size_t>(i)] == i + 0.5);
  }
  CHECK(client.stats().reconnects == 4);
  CHECK(!client.failure());
}

TEST_CASE("classic: messages and keepalives; empty and negative-timestamp frames") {
  Reactor r;
  Collector rx;
  LinkOptions lo = listen_opts(Proto::automatic);
  lo.receive_only = true;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  Collector ignore;
  LinkOptions so = dial_opts(server, Proto::classic);
  so.await_peer_end = false;
  Link client(r, so, &ignore);
  ignore.link = &client;
  REQUIRE(client.start());
  std::string a = "first", b = "second";
  REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(a.data()), a.size()}, 2.0));
  REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(b.data()), b.size()}, -1.0));
  REQUIRE(run_until(r, [&] { return client.ready(); }));
  client.send_keepalive();
  client.finish();
  REQUIRE(run_until(r, [&] { return rx.got.size() == 2 && server.wire_proto() == Proto::classic; }));
  CHECK(rx.got[0] == "first");
  CHECK(rx.got[1] == "second");
  CHECK(rx.stamps[1] == -1.0);
  CHECK(server.stats().negative_ts == 1);
}

TEST_CASE("dialing nobody fails with a connect error once patience runs out") {
  Reactor r;
  LinkOptions o;
  // Bind a port and close it again: nothing listens there now.
  LinkOptions lo = listen_opts();
  uint16_t port;
  {
    Link tmp(r, lo, nullptr);
    REQUIRE(tmp.start());
    port = port_of(tmp.local_address());
  }
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port));
  o.wait_s = 0.2;
  o.backoff.initial = std::chrono::milliseconds(20);
  Link l(r, o, nullptr);
  REQUIRE(l.start());
  REQUIRE(run_until(r, [&] { return l.closed(); }));
  REQUIRE(l.failure());
  CHECK(l.failure()->kind == ErrorKind::connect);
  CHECK(l.failure()->sys_errno == ECONNREFUSED);
}

TEST_CASE("a resume does not count held-but-undelivered messages as acknowledged") {
  Reactor r;
  LinkOptions lo = listen_opts();
  lo.receive_only = true;
  Link server(r, lo, nullptr);  // nobody consumes: messages are held, not delivered
  REQUIRE(server.start());
  Collector ignore;
  Link client(r, dial_opts(server), &ignore);
  ignore.link = &client;
  REQUIRE(client.start());
  std::string m(1000, 'm');
  for (int i = 0; i < 5; ++i) {
    REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, i));
  }
  client.finish();
  REQUIRE(run_until(r, [&] { return server.available() == 5; }));
  client.abort_connection();
  REQUIRE(run_until(r, [&] { return client.ready() && client.stats().reconnects == 1; }));
  for (int i = 0; i < 50; ++i) r.run_once(std::chrono::milliseconds(1));
  CHECK(!client.finished());  // the peer holds them, but has not delivered them
  CHECK(client.stats().resent_bytes == 0);  // ... and they are not sent twice either
  server.consume(5);
  Message end;
  server.peek(end);  // reaches the END marker
  REQUIRE(run_until(r, [&] { return client.completed() && server.completed(); }));
  CHECK(server.stats().messages_received == 5);
}
