#include "lib/link/link.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/byte_order.h"

using namespace dl;
using dl::testing::run_until;

namespace {

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

namespace {
// A version-1 HELLO frame (48-byte payload), as an old dltools build sends it.
std::vector<std::uint8_t> v1_hello() {
  std::vector<std::uint8_t> f(frame::kHeaderSize + 48, 0);
  std::uint8_t* p = f.data() + frame::kHeaderSize;
  std::memcpy(p, "DLNK", 4);
  put_u16(p + 4, 1);
  put_u64(p + 8, 7);
  put_u64(p + 16, 9);
  put_u64(p + 24, 1);
  put_u32(p + 32, 1 << 20);
  frame::encode(f.data(), frame::Type::hello, 0, 1.0, {p, 48});
  return f;
}

int connect_to(std::uint16_t port) {
  int fd = dl::testing::connect_loopback(port);
  REQUIRE(fd >= 0);
  return fd;
}
}  // namespace

TEST_CASE("a version 1 dialer gets a final 'upgrade' ERROR and the listener goes on") {
  Reactor r;
  Collector rx;
  LinkOptions lo = listen_opts();
  lo.receive_only = true;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  int fd = connect_to(port_of(server.local_address()));
  auto h = v1_hello();
  REQUIRE(::send(fd, h.data(), h.size(), 0) == static_cast<ssize_t>(h.size()));
  std::vector<std::uint8_t> got;
  bool eof = false;
  REQUIRE(run_until(r, [&] {
    std::uint8_t buf[2048];
    ssize_t n = eof ? 0 : ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    eof = eof || n == 0 || (n < 0 && errno != EAGAIN);
    return eof;
  }, std::chrono::milliseconds(200 * 50)));
  ::close(fd);
  auto d = frame::decode(got, 1 << 20);
  REQUIRE(d.status == frame::Status::frame);
  CHECK(d.header.type == frame::Type::error);
  CHECK((d.header.flags & frame::kFlagRetryable) == 0);  // final: a retry cannot help
  std::string text(got.begin() + frame::kHeaderSize, got.end());
  CHECK(text.starts_with(std::string("version\0", 8)));
  CHECK(text.find("upgrade") != std::string::npos);
  CHECK(!server.closed());  // the listener waits for a peer it can talk to
}

TEST_CASE("a dialer refused by a version 1 listener stops at once with the reason") {
  Reactor r;
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  o.wait_s = 10;
  Link client(r, o, nullptr);
  REQUIRE(client.start());
  int c = -1;
  REQUIRE(run_until(r, [&] {
    if (c < 0) c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
    return c >= 0;
  }, std::chrono::milliseconds(200 * 50)));
  // What a version-1 listener answers: ERROR "version", flags 0 (v1 has no retryable bit).
  std::string payload = frame::encode_error_payload("version", "peer speaks protocol version 2, this build speaks 1");
  std::vector<std::uint8_t> f(frame::kHeaderSize + payload.size());
  std::memcpy(f.data() + frame::kHeaderSize, payload.data(), payload.size());
  frame::encode(f.data(), frame::Type::error, 0, 1.0, {f.data() + frame::kHeaderSize, payload.size()});
  REQUIRE(::send(c, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size()));
  REQUIRE(run_until(r, [&] { return client.closed(); }, std::chrono::milliseconds(10000)));
  REQUIRE(client.failure());
  CHECK(client.failure()->kind == ErrorKind::protocol);
  CHECK(client.failure()->message().find("upgrade") != std::string::npos);
  ::close(c);
  ::close(lfd);
}

namespace {
struct EventLog : LinkObserver {
  std::vector<std::pair<LinkEvent, std::string>> events;
  std::vector<std::string> whys;
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override {
    events.emplace_back(e, detail);
    whys.push_back(why ? why->message() : std::string());
  }
  int count(LinkEvent e) const {
    int n = 0;
    for (auto& ev : events) n += ev.first == e;
    return n;
  }
};
}  // namespace

TEST_CASE("dialing: each failed round is reported, the last one runs at the deadline") {
  Reactor r;
  std::uint16_t port;
  {
    Link tmp(r, listen_opts(), nullptr);
    REQUIRE(tmp.start());
    port = port_of(tmp.local_address());
  }
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port));
  o.wait_s = 0.3;
  o.backoff.initial = std::chrono::milliseconds(20);
  o.backoff.max = std::chrono::milliseconds(50);
  EventLog log;
  Link l(r, o, &log);
  auto t0 = Clock::now();
  REQUIRE(l.start());
  REQUIRE(run_until(r, [&] { return l.closed(); }));
  CHECK(Clock::now() - t0 >= std::chrono::milliseconds(300));
  REQUIRE(l.failure());
  CHECK(l.failure()->kind == ErrorKind::connect);
  // One line in the family's shape (context: reason), not "connect HOST:PORT: (tried for 0.3 s):
  // Connection refused".
  CHECK(l.failure()->message() ==
        "connect 127.0.0.1:" + std::to_string(port) + " (tried for 0.3 s): Connection refused");
  CHECK(log.count(LinkEvent::retrying) >= 3);
  for (std::size_t i = 0; i < log.events.size(); ++i) {
    if (log.events[i].first != LinkEvent::retrying) continue;
    CHECK(log.events[i].second.find(" ms") != std::string::npos);
    CHECK(log.whys[i].find("Connection refused") != std::string::npos);
  }
}

TEST_CASE("dialing by host name: looked up off the reactor thread, and again after a drop") {
  Reactor r;
  Collector rx;
  LinkOptions lo = listen_opts();
  lo.receive_only = true;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  LinkOptions so = dial_opts(server);
  so.endpoint = *parse_dial_endpoint("localhost:" + std::to_string(port_of(server.local_address())));
  Link client(r, so, nullptr);
  REQUIRE(client.start());
  std::string m = "by name";
  REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, 1));
  REQUIRE(run_until(r, [&] { return rx.got.size() == 1; }));
  client.abort_connection();
  REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, 2));
  REQUIRE(run_until(r, [&] { return rx.got.size() == 2 && client.stats().reconnects == 1; }));
  CHECK(rx.got[1] == "by name");
}

TEST_CASE("a name that does not resolve fails start() at once") {
  Reactor r;
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("no-such-host.invalid:1");
  Link l(r, o, nullptr);
  auto st = l.start();
  REQUIRE(!st);
  CHECK(st.error().kind == ErrorKind::resolve);
}

namespace {
// Reads the way a batching application does: peeks every waiting message by index, then
// consumes them all at once, and does not peek again until told there is more.
struct BatchCollector : LinkObserver {
  Link* link = nullptr;
  std::size_t got = 0;
  void on_readable() override {
    Message m;
    std::size_t n = 0;
    while (link && link->peek(m, n)) ++n;
    if (link && n) link->consume(n);
    got += n;
  }
};
}  // namespace

TEST_CASE("native: the peer's END is taken in once the messages before it are consumed in a batch") {
  Reactor r;
  BatchCollector rx;
  LinkOptions lo = listen_opts();
  lo.receive_only = true;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  Collector ignore;
  Link client(r, dial_opts(server), &ignore);
  ignore.link = &client;
  REQUIRE(client.start());
  // Everything, END included, is queued before the first byte goes out, so the messages and
  // the END tend to arrive in one read and one on_readable().
  std::string m(100, 'm');
  for (int i = 0; i < 5; ++i) REQUIRE(client.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, 1));
  client.finish();
  REQUIRE(run_until(r, [&] { return client.completed() && server.completed(); }, std::chrono::milliseconds(20000)));
  CHECK(rx.got == 5);
  CHECK(server.peer_finished());
}

namespace {
// A listening and a dialing Link on one reactor, joined through a CutRelay (the network in
// between); each Link's messages are collected. The options are listen_opts()/dial_opts()
// with the caller's changes.
struct RelayedPair {
  Reactor r;
  Collector at_server, at_client;
  std::unique_ptr<Link> server, client;
  std::unique_ptr<dl::testing::CutRelay> net;
  RelayedPair(const std::function<void(LinkOptions&)>& tune_server,
              const std::function<void(LinkOptions&)>& tune_client) {
    LinkOptions lo = listen_opts();
    tune_server(lo);
    server = std::make_unique<Link>(r, lo, &at_server);
    at_server.link = server.get();
    REQUIRE(server->start());
    net = std::make_unique<dl::testing::CutRelay>(r, port_of(server->local_address()));
    REQUIRE(net->port() != 0);
    LinkOptions co = dial_opts(*server);
    co.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(net->port()));
    tune_client(co);
    client = std::make_unique<Link>(r, co, &at_client);
    at_client.link = client.get();
    REQUIRE(client->start());
  }
  void send(Link& from, int count, std::size_t size) {
    std::string m(size, 'm');
    for (int i = 0; i < count; ++i) REQUIRE(from.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, i));
  }
  void rounds(int n) {
    for (int i = 0; i < n; ++i) r.run_once(std::chrono::milliseconds(1));
  }
};
}  // namespace

TEST_CASE("a cut that takes the last ACK with it: the side that completed first stays resumable") {
  // dlsend -> dlrecv -l: the receiver completes first, when it queues the ACK of the sender's
  // END. If the network then drops that ACK and resets the connection, the sender cannot know
  // the receiver has everything; the receiver must stay resumable for its linger time (as
  // TCP's TIME_WAIT keeps answering a last FIN) so the sender's reconnect completes the session
  // too. Before, the receiver took the cut for the normal end and exited 0 while the sender
  // retried into a closed port and gave up (exit 5).
  RelayedPair p([](LinkOptions& o) { o.receive_only = true; o.linger_ms = 3000; },
                [](LinkOptions& o) { o.reconnect_s = 3; });
  p.send(*p.client, 5, 1000);
  p.client->finish();
  // The network loses everything the server writes from its completion on: its last ACK.
  p.net->hold_target_when([&] { return p.server->completed(); });
  REQUIRE(run_until(p.r, [&] { return p.server->completed(); }));
  p.rounds(5);
  REQUIRE(!p.client->completed());
  p.net->cut();
  REQUIRE(run_until(p.r, [&] { return p.client->closed() && p.server->closed(); }, std::chrono::seconds(8)));
  CHECK(p.client->completed());
  CHECK(!p.client->failure());
  CHECK(!p.server->failure());
  CHECK(p.net->connections() == 2);
  CHECK(p.at_server.got.size() == 5);
}

TEST_CASE("after completing, a lingering side that is cut and never resumed still ends well") {
  RelayedPair p([](LinkOptions& o) { o.receive_only = true; o.linger_ms = 300; }, [](LinkOptions&) {});
  p.send(*p.client, 1, 10);
  p.client->finish();
  p.net->hold_target_when([&] { return p.server->completed(); });
  REQUIRE(run_until(p.r, [&] { return p.server->completed(); }));
  p.client->close();  // the sender is gone for good
  p.net->cut();
  auto t0 = Clock::now();
  REQUIRE(run_until(p.r, [&] { return p.server->closed(); }, std::chrono::seconds(5)));
  CHECK(!p.server->failure());  // it has everything: its linger running out is still success
  CHECK(Clock::now() - t0 >= std::chrono::milliseconds(200));  // it did wait for a resume
  CHECK(p.at_server.got.size() == 1);
}

TEST_CASE("a cut that takes the last ACK with it: a dialer that completed first reconnects to deliver it") {
  // The dialer ends its own direction at once and receives: the listener's END reaches it
  // last, so the dialer completes first, when it queues that END's ACK.
  RelayedPair p([](LinkOptions& o) { o.reconnect_s = 3; }, [](LinkOptions& o) { o.linger_ms = 3000; });
  p.client->finish();
  REQUIRE(run_until(p.r, [&] { return p.client->ready(); }));
  p.rounds(20);  // the dialer's END is acknowledged
  p.send(*p.server, 5, 1000);
  p.server->finish();
  p.net->hold_dialer_when([&] { return p.client->completed(); });
  REQUIRE(run_until(p.r, [&] { return p.client->completed(); }));
  p.rounds(5);
  REQUIRE(!p.server->completed());
  p.net->cut();
  REQUIRE(run_until(p.r, [&] { return p.client->closed() && p.server->closed(); }, std::chrono::seconds(8)));
  CHECK(p.server->completed());
  CHECK(!p.server->failure());
  CHECK(!p.client->failure());
  CHECK(p.net->connections() == 2);
  CHECK(p.at_client.got.size() == 5);
}

// A relay as dlbridge runs it: messages peeked from one link go out on another with try_forward
// (their payload sent from the first link's ring) and are consumed upstream only once settled
// downstream. Small messages put many borrowed payloads into one write; the downstream cuts
// replay them from the upstream ring; an offset downstream seq (the relay sent one message of
// its own first) must not reuse the upstream checksum.
TEST_CASE("try_forward: relayed messages arrive exact from the upstream ring, across cuts") {
  for (bool offset : {false, true}) {
    CAPTURE(offset);
    Reactor r;
    Collector ignore_up, ignore_down, rx;
    LinkOptions uo = listen_opts();
    uo.receive_only = true;
    Link up(r, uo, nullptr);
    REQUIRE(up.start());
    Link sender(r, dial_opts(up), &ignore_up);
    ignore_up.link = &sender;
    REQUIRE(sender.start());
    LinkOptions so = listen_opts();
    so.receive_only = true;
    Link sink(r, so, &rx);
    rx.link = &sink;
    REQUIRE(sink.start());
    LinkOptions fo = dial_opts(sink);
    fo.window = 64 * 1024;  // many small frames in flight: more pieces than one write's iovecs
    Link down(r, fo, &ignore_down);
    ignore_down.link = &down;
    REQUIRE(down.start());
    if (offset) REQUIRE(down.try_send({reinterpret_cast<const std::uint8_t*>("own"), 3}, 0.25));

    const int kCount = 4000;
    auto body = [](int i) {
      std::string m = "m" + std::to_string(i) + ":";
      m.append(static_cast<std::size_t>((i * 37) % 400), static_cast<char>('a' + i % 26));
      return m;
    };
    int sent = 0, cuts = 0;
    bool reused_seen = false;
    std::deque<std::uint64_t> inflight;  // downstream number that settles each forwarded message
    bool ok = run_until(r, [&] {
      for (; sent < kCount; ++sent) {
        std::string m = body(sent);
        if (!sender.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, sent + 0.5)) break;
      }
      if (sent == kCount) sender.finish();
      std::size_t settled = 0;
      while (!inflight.empty() && inflight.front() <= down.messages_settled()) {
        inflight.pop_front();
        ++settled;
      }
      if (settled) up.consume(settled);
      Message m;
      while (up.peek(m, inflight.size())) {
        if (m.checksum && !offset) reused_seen = true;
        if (!down.try_forward(m)) break;
        inflight.push_back(down.messages_committed());
      }
      if (up.peer_finished() && inflight.empty() && !up.peek(m, 0)) down.finish();
      if (cuts < 3 && rx.got.size() > static_cast<std::size_t>(cuts + 1) * 1000 && down.ready()) {
        down.abort_connection();
        ++cuts;
      }
      return sink.completed() && down.completed() && up.completed() && sender.completed();
    });
    INFO("got " << rx.got.size() << " sent " << sent << " cuts " << cuts << " inflight " << inflight.size()
         << " down errors " << down.stats().protocol_errors << " sink errors " << sink.stats().protocol_errors
         << " settled " << down.messages_settled() << " committed " << down.messages_committed()
         << " completed " << sink.completed() << down.completed() << up.completed() << sender.completed()
         << " failure " << (sink.failure() ? sink.failure()->message() : "") << (down.failure() ? down.failure()->message() : ""));
    REQUIRE(ok);
    CHECK(cuts == 3);
    CHECK(reused_seen == !offset);
    std::size_t first = offset ? 1 : 0;
    REQUIRE(rx.got.size() == kCount + first);
    if (offset) CHECK(rx.got[0] == "own");
    for (int i = 0; i < kCount; ++i) {
      REQUIRE(rx.got[first + static_cast<std::size_t>(i)] == body(i));
      REQUIRE(rx.stamps[first + static_cast<std::size_t>(i)] == i + 0.5);
    }
    CHECK(down.stats().reconnects == 3);
    CHECK(down.stats().protocol_errors == 0);  // no checksum mismatch anywhere
    CHECK(sink.stats().protocol_errors == 0);
  }
}

namespace {
// One direction of a test relay, as dlbridge's pair runs it.
struct RelayDirection {
  RelayDirection(Link& from, Link& to) : up(from), down(to) {}
  Link& up;
  Link& down;
  std::deque<std::uint64_t> inflight;
  bool ended = false;
  void pump() {
    std::size_t settled = 0;
    while (!inflight.empty() && inflight.front() <= down.messages_settled()) {
      inflight.pop_front();
      ++settled;
    }
    if (settled) up.consume(settled);
    Message m;
    while (!ended && up.peek(m, inflight.size())) {
      if (!down.try_forward(m)) break;
      inflight.push_back(down.messages_committed());
    }
    if (!ended && up.peer_finished() && inflight.empty() && !up.peek(m, 0)) {
      down.finish();
      ended = true;
    }
  }
};
}  // namespace

TEST_CASE("try_forward both ways at once through one relay, both hops cut") {
  // Each relay link sends from the other's ring while its own ring is borrowed from: payloads
  // in flight both ways, replays on both hops.
  Reactor r;
  Collector at_a, at_b;
  LinkOptions lo = listen_opts();
  Link r1(r, lo, nullptr);  // the relay's side facing a
  REQUIRE(r1.start());
  LinkOptions ao = dial_opts(r1);
  ao.window = 256 * 1024;
  Link a(r, ao, &at_a);
  at_a.link = &a;
  REQUIRE(a.start());
  Link b(r, listen_opts(), &at_b);
  at_b.link = &b;
  REQUIRE(b.start());
  LinkOptions ro = dial_opts(b);
  ro.window = 128 * 1024;
  Link r2(r, ro, nullptr);  // the relay's side facing b
  REQUIRE(r2.start());
  RelayDirection to_b{r1, r2}, to_a{r2, r1};

  const int kCount = 3000;
  auto body = [](char who, int i) {
    std::string m(1, who);
    m += std::to_string(i) + ":";
    m.append(static_cast<std::size_t>((i * 53) % (i % 100 == 0 ? 60000 : 300)), static_cast<char>('a' + i % 26));
    return m;
  };
  int sent_a = 0, sent_b = 0, cuts = 0;
  bool ok = run_until(r, [&] {
    for (; sent_a < kCount; ++sent_a) {
      std::string m = body('a', sent_a);
      if (!a.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, sent_a)) break;
    }
    for (; sent_b < kCount; ++sent_b) {
      std::string m = body('b', sent_b);
      if (!b.try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, sent_b)) break;
    }
    if (sent_a == kCount) a.finish();
    if (sent_b == kCount) b.finish();
    to_b.pump();
    to_a.pump();
    std::size_t progress = at_a.got.size() + at_b.got.size();
    if (cuts < 4 && progress > static_cast<std::size_t>(cuts + 1) * 1000) {
      Link& hop = cuts % 2 ? r1 : r2;
      if (hop.ready()) {
        hop.abort_connection();
        ++cuts;
      }
    }
    return a.completed() && b.completed() && r1.completed() && r2.completed();
  });
  INFO("a got " << at_a.got.size() << ", b got " << at_b.got.size() << ", cuts " << cuts);
  REQUIRE(ok);
  CHECK(cuts == 4);
  REQUIRE(at_a.got.size() == kCount);
  REQUIRE(at_b.got.size() == kCount);
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(at_b.got[static_cast<std::size_t>(i)] == body('a', i));
    REQUIRE(at_a.got[static_cast<std::size_t>(i)] == body('b', i));
  }
  CHECK(r1.stats().protocol_errors + r2.stats().protocol_errors + a.stats().protocol_errors + b.stats().protocol_errors == 0);
}
