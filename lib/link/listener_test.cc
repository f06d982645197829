#include "lib/link/listener.h"

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "lib/link/link.h"
#include "lib/net/net_testing.h"

using namespace dl;
using dl::testing::run_until;

namespace {

struct Events : LinkObserver {
  Link* link = nullptr;
  std::vector<std::string> got;
  std::vector<std::pair<LinkEvent, std::string>> events;  // detail, or the error's id
  void on_readable() override {
    Message m;
    while (link && link->peek(m)) {
      got.emplace_back(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
      link->consume();
    }
  }
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override {
    events.emplace_back(e, why ? why->id : detail);
  }
  int count(LinkEvent e) const {
    int n = 0;
    for (auto& ev : events) n += ev.first == e;
    return n;
  }
};

// The listening side of several sessions: one Link per session, made when a new one arrives.
struct Server {
  Reactor& r;
  Events listener_events;
  SessionListener listener;
  struct Session {
    Events rx;
    std::unique_ptr<Link> link;
  };
  std::vector<std::unique_ptr<Session>> sessions;

  explicit Server(Reactor& reactor)
      : r(reactor), listener(reactor, options(), &listener_events, [this](const Newcomer& n, Error* why) {
          return make_session(n, why);
        }) {}

  static ListenerOptions options() {
    ListenerOptions o;
    o.endpoint = *parse_listen_endpoint("127.0.0.1:0");
    o.proto = Proto::automatic;
    o.multi_session = true;
    o.handshake_ms = 300;
    return o;
  }

  Link* make_session(const Newcomer& n, Error* why) {
    if (n.proto != Proto::native) {
      *why = protocol_error("session-busy", "", "native peers only here");
      return nullptr;
    }
    LinkOptions lo;
    lo.listen = true;
    lo.proto = Proto::native;
    lo.receive_only = true;
    lo.linger_ms = 200;
    lo.incarnation = listener.incarnation();
    auto s = std::make_unique<Session>();
    s->link = std::make_unique<Link>(r, lo, &s->rx);
    s->rx.link = s->link.get();
    if (!s->link->start(listener)) return nullptr;
    sessions.push_back(std::move(s));
    return sessions.back()->link.get();
  }

  std::uint16_t port() const { return port_of(listener.local()); }
};

LinkOptions dial_opts(std::uint16_t port) {
  LinkOptions o;
  o.endpoint = *parse_dial_endpoint("127.0.0.1:" + std::to_string(port));
  o.proto = Proto::native;
  o.wait_s = 10;
  o.linger_ms = 200;
  o.window = 32 * 1024;  // small: backpressure and many acks
  o.backoff.initial = std::chrono::milliseconds(5);
  return o;
}

struct Client {
  Events ev;
  std::unique_ptr<Link> link;
  int id = 0, sent = 0;
  Client(Reactor& r, std::uint16_t port, int i) : id(i) {
    link = std::make_unique<Link>(r, dial_opts(port), &ev);
    ev.link = link.get();
  }
  std::string message(int n) const {
    return "c" + std::to_string(id) + "-" + std::to_string(n) + std::string(static_cast<std::size_t>(n % 300), 'x');
  }
  void pump(int count, bool end = true) {
    while (sent < count) {
      std::string m = message(sent);
      if (!link->try_send({reinterpret_cast<const std::uint8_t*>(m.data()), m.size()}, sent)) break;
      ++sent;
    }
    if (sent == count && end) link->finish();
  }
};

int connect_to(std::uint16_t port) {
  int fd = dl::testing::connect_loopback(port);
  REQUIRE(fd >= 0);
  return fd;
}

std::vector<std::uint8_t> hello_frame(const frame::Hello& h) {
  std::vector<std::uint8_t> f(frame::kHeaderSize + frame::kHelloSize);
  frame::encode_hello(f.data() + frame::kHeaderSize, h);
  frame::encode(f.data(), frame::Type::hello, 0, 1.0, {f.data() + frame::kHeaderSize, frame::kHelloSize});
  return f;
}

// Sends `f` from a stranger's socket and returns the first frame of the answer (the listener
// closes after it).
frame::Decoded stranger(Reactor& r, std::uint16_t port, const std::vector<std::uint8_t>& f, std::string* text) {
  int fd = connect_to(port);
  REQUIRE(::send(fd, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size()));
  std::vector<std::uint8_t> got;
  bool eof = false;
  run_until(r, [&] {
    std::uint8_t buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    eof = n == 0 || (n < 0 && errno != EAGAIN);
    return eof;
  }, std::chrono::milliseconds(10000));
  ::close(fd);
  static std::vector<std::uint8_t> keep;
  keep = got;
  auto d = frame::decode(keep, 1 << 20);
  if (d.status == frame::Status::frame) text->assign(keep.begin() + frame::kHeaderSize, keep.end());
  return d;
}

}  // namespace

TEST_CASE("several sessions on one listener: each to its own Link, a cut resumes into the right one") {
  Reactor r;
  Server server(r);
  REQUIRE(server.listener.start());
  constexpr int kClients = 3, kCount = 2000;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(r, server.port(), i));
    REQUIRE(clients.back()->link->start());
  }
  bool cut = false, replayed = false;
  std::string refusal;
  bool ok = run_until(r, [&] {
    for (auto& c : clients) c->pump(kCount);
    if (server.sessions.size() == kClients && !cut) {
      // Cut client 1 mid-stream, once its session has taken a fair share.
      for (auto& s : server.sessions) {
        if (s->rx.got.size() > 300 && s->rx.got[0].starts_with("c1-") && clients[1]->link->ready()) {
          clients[1]->link->abort_connection();
          cut = true;
        }
      }
    }
    if (cut && !replayed && clients[2]->link->ready()) {
      // A stranger replays client 2's first HELLO (its session id, no token): refused alone.
      frame::Hello h;
      frame::Hello live = clients[2]->link->session().hello();
      h.session_hi = live.session_hi;
      h.session_lo = live.session_lo;
      h.max_message = 1 << 20;
      h.window = 1 << 20;
      auto d = stranger(r, server.port(), hello_frame(h), &refusal);
      REQUIRE(d.status == frame::Status::frame);
      CHECK(d.header.type == frame::Type::error);
      replayed = true;
    }
    bool done = true;
    for (auto& c : clients) done = done && c->link->completed();
    for (auto& s : server.sessions) done = done && s->link->completed();
    return done && server.sessions.size() == kClients;
  });
  REQUIRE(ok);
  CHECK(cut);
  CHECK(replayed);
  CHECK(refusal.starts_with(std::string("stale-hello\0", 12)));
  REQUIRE(server.sessions.size() == kClients);  // the cut resumed, the replay made no session
  std::vector<bool> seen(kClients, false);
  for (auto& s : server.sessions) {
    REQUIRE(s->rx.got.size() == kCount);
    int id = s->rx.got[0][1] - '0';
    REQUIRE(id >= 0);
    REQUIRE(id < kClients);
    CHECK(!seen[static_cast<std::size_t>(id)]);
    seen[static_cast<std::size_t>(id)] = true;
    for (int n = 0; n < kCount; ++n) REQUIRE(s->rx.got[static_cast<std::size_t>(n)] == clients[static_cast<std::size_t>(id)]->message(n));
    // Only the cut session saw a reconnect; the stranger never reached any session.
    CHECK(s->link->stats().reconnects == (id == 1 ? 1u : 0u));
    CHECK(s->rx.count(LinkEvent::disconnected) == (id == 1 ? 1 : 0));
  }
  CHECK(clients[1]->link->stats().reconnects == 1);
  CHECK(clients[0]->link->stats().reconnects == 0);
  CHECK(clients[2]->link->stats().reconnects == 0);
  CHECK(server.listener_events.count(LinkEvent::rejected) == 1);
}

TEST_CASE("several sessions: a HELLO resuming a session nobody serves is refused, a fresh one adopted") {
  Reactor r;
  Server server(r);
  REQUIRE(server.listener.start());
  frame::Hello h;
  h.session_hi = 11;
  h.session_lo = 12;
  h.token = 99;  // claims a session this listener never had
  h.incarnation = server.listener.incarnation();
  h.max_message = 1 << 20;
  h.window = 1 << 20;
  std::string text;
  auto d = stranger(r, server.port(), hello_frame(h), &text);
  REQUIRE(d.status == frame::Status::frame);
  CHECK(d.header.type == frame::Type::error);
  CHECK((d.header.flags & frame::kFlagRetryable) == 0);
  CHECK(text.starts_with(std::string("session-lost\0", 13)));
  CHECK(server.sessions.empty());
  CHECK(server.listener_events.count(LinkEvent::rejected) == 1);

  // Garbage and silence are the listener's business: no session is made for them.
  std::vector<std::uint8_t> junk = {0x01, 0x02, 0x03};
  d = stranger(r, server.port(), junk, &text);
  CHECK(server.sessions.empty());
  CHECK(server.listener_events.count(LinkEvent::rejected) == 2);
  CHECK(server.listener.handshakes() == 0);

  // Silence is dropped at the handshake deadline, reported, and makes no session either.
  int silent = connect_to(server.port());
  REQUIRE(run_until(r, [&] { return server.listener_events.count(LinkEvent::rejected) == 3; }, std::chrono::milliseconds(5000)));
  CHECK(server.listener_events.events.back().second.empty());  // a timeout, no protocol id
  ::close(silent);
  CHECK(server.sessions.empty());

  // A session that ends is gone from the listener once its Link is.
  Client c(r, server.port(), 0);
  REQUIRE(c.link->start());
  REQUIRE(run_until(r, [&] {
    c.pump(10);
    return c.link->completed() && server.sessions.size() == 1 && server.sessions[0]->link->completed();
  }));
  // A closed link leaves the listener by itself; a live one when it is destroyed.
  REQUIRE(run_until(r, [&] { return server.sessions[0]->link->closed(); }, std::chrono::milliseconds(10000)));
  CHECK(server.listener.sessions() == 0);
  Client second(r, server.port(), 1);
  REQUIRE(second.link->start());
  REQUIRE(run_until(r, [&] { return server.sessions.size() == 2; }, std::chrono::milliseconds(10000)));
  CHECK(server.listener.sessions() == 1);
  server.sessions.clear();
  CHECK(server.listener.sessions() == 0);
}

TEST_CASE("one session (a Link that listens): a second dialer is refused while the first flows") {
  Reactor r;
  Events rx;
  LinkOptions lo;
  lo.listen = true;
  lo.endpoint = *parse_listen_endpoint("127.0.0.1:0");
  lo.proto = Proto::native;
  lo.receive_only = true;
  lo.wait_s = 10;
  lo.linger_ms = 200;
  Link server(r, lo, &rx);
  rx.link = &server;
  REQUIRE(server.start());
  std::uint16_t port = port_of(server.local_address());
  Client a(r, port, 0), b(r, port, 1);
  REQUIRE(a.link->start());
  REQUIRE(run_until(r, [&] {
    a.pump(100, false);
    return rx.got.size() >= 10;
  }, std::chrono::milliseconds(200 * 50)));
  REQUIRE(b.link->start());  // session-busy is retryable: b keeps trying while a flows
  REQUIRE(run_until(r, [&] {
    a.pump(100, false);
    return rx.count(LinkEvent::rejected) >= 1;
  }, std::chrono::milliseconds(200 * 50)));
  REQUIRE(run_until(r, [&] {
    a.pump(500);
    return a.link->completed() && rx.got.size() == 500;
  }, std::chrono::milliseconds(200 * 50)));
  CHECK(rx.count(LinkEvent::disconnected) == 0);
  for (int n = 0; n < 500; ++n) REQUIRE(rx.got[static_cast<std::size_t>(n)] == a.message(n));
  CHECK(b.ev.count(LinkEvent::connected) == 0);
}

TEST_CASE("several sessions: a session closed by its owner is forgotten at once; its dialer hears it is over") {
  Reactor r;
  Server server(r);
  REQUIRE(server.listener.start());
  Client c(r, server.port(), 0);
  REQUIRE(c.link->start());
  REQUIRE(run_until(r, [&] {
    c.pump(100, false);
    return server.sessions.size() == 1 && server.sessions[0]->rx.got.size() >= 50;
  }, std::chrono::milliseconds(400 * 50)));
  // The owner closes the session without a word and destroys the Link; the dialer's next
  // connection (its HELLO names that session) must not reach the dead Link: it is refused
  // alone, as a session this listener does not know, and the dialer stops (no replay).
  server.sessions[0]->link->close();
  CHECK(server.listener.sessions() == 0);
  server.sessions.clear();
  c.link->abort_connection();
  REQUIRE(run_until(r, [&] {
    c.pump(100, false);
    return c.link->closed();
  }, std::chrono::milliseconds(400 * 50)));
  REQUIRE(c.link->failure());
  CHECK(c.link->failure()->id == "session-lost");
  CHECK(server.sessions.empty());
  CHECK(server.listener_events.count(LinkEvent::rejected) >= 1);
  // A fresh dialer still gets its own session: the listener goes on.
  Client d(r, server.port(), 1);
  REQUIRE(d.link->start());
  REQUIRE(run_until(r, [&] {
    d.pump(10);
    return d.link->completed() && server.sessions.size() == 1 && server.sessions[0]->rx.got.size() == 10;
  }, std::chrono::milliseconds(400 * 50)));
}
