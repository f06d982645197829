// The handshake gate and the TLS stream layer over in-process socket pairs, with pre-shared
// keys written at test time: the right key gives both sides a secured socket that a Stream
// reads and writes through (bytes held inside TLS arrive without a poll() event); a wrong key,
// a plain stranger and a silent one are refused, and the plain one is told in TLS terms.
#include "lib/net/tls_gate.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "lib/net/net_testing.h"
#include "lib/net/tls_testing.h"
#include "lib/net/stream.h"

using namespace dl;
using namespace dl::testing;

namespace {

struct Side {
  std::unique_ptr<TlsSocket> socket;
  std::optional<Error> refused;
  std::unique_ptr<TlsGate> gate;
  Side(Reactor& r, std::shared_ptr<TlsConfig> cfg, TlsGateOptions o = {}) {
    gate = std::make_unique<TlsGate>(
        r, std::move(cfg), o, [this](std::unique_ptr<TlsSocket> s, const SocketAddress&) { socket = std::move(s); },
        [this](const Error& e, const SocketAddress&) { refused = e; });
  }
  bool done() const { return socket || refused; }
};

}  // namespace

TEST_CASE("the right pre-shared key secures both sides, and a Stream carries bytes through TLS") {
  Reactor r;
  auto [a, b] = testing::socket_pair(SOCK_NONBLOCK);
  Side listener(r, psk_config(psk_file("gate-a1.psk", kKeyA), TlsRole::listener));
  Side dialer(r, psk_config(psk_file("gate-a2.psk", kKeyA), TlsRole::dialer));
  listener.gate->admit(std::move(a), SocketAddress{});
  dialer.gate->admit(std::move(b), SocketAddress{});
  REQUIRE(testing::run_until(r, [&] { return listener.done() && dialer.done(); }));
  REQUIRE(listener.socket);
  REQUIRE(dialer.socket);
  CHECK(listener.gate->pending() == 0);
  CHECK(dialer.socket->tls()->suite() == "TLS_AES_128_GCM_SHA256");  // AES-NI's fastest

  auto in = Stream::from_layer(r, std::move(listener.socket));
  auto out = Stream::from_layer(r, std::move(dialer.socket));
  auto data = testing::random_bytes(3 << 20);
  std::vector<std::uint8_t> got;
  std::size_t sent = 0;
  bool eof = false;
  // Small reads: most of each record waits inside TLS, where poll() cannot see it.
  in->on_readable([&] {
    std::uint8_t buf[1000];
    ssize_t n = in->read(buf, sizeof buf);
    if (n > 0) got.insert(got.end(), buf, buf + n);
    if (n == 0) eof = true;
  });
  in->want_read(true);
  out->on_writable([&] {
    while (sent < data.size()) {
      ssize_t n = out->write(data.data() + sent, std::min<std::size_t>(data.size() - sent, 100000));
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
    out->want_write(false);
    (void)out->shutdown_write();
  });
  out->want_write(true);
  REQUIRE(testing::run_until(r, [&] { return eof; }));
  CHECK(out->flushed());
  CHECK(got == data);
}

TEST_CASE("a wrong pre-shared key is refused on both sides") {
  Reactor r;
  auto [a, b] = testing::socket_pair(SOCK_NONBLOCK);
  Side listener(r, psk_config(psk_file("gate-b1.psk", kKeyA), TlsRole::listener));
  Side dialer(r, psk_config(psk_file("gate-b2.psk", kKeyB), TlsRole::dialer));
  listener.gate->admit(std::move(a), SocketAddress{});
  dialer.gate->admit(std::move(b), SocketAddress{});
  REQUIRE(testing::run_until(r, [&] { return listener.done() && dialer.done(); }));
  REQUIRE(listener.refused);
  REQUIRE(dialer.refused);
  CHECK(listener.refused->kind == ErrorKind::auth);
  CHECK(dialer.refused->kind == ErrorKind::auth);
  CHECK(listener.refused->message().find("wrong pre-shared key") != std::string::npos);
  CHECK(dialer.refused->message().find("pre-shared key") != std::string::npos);
}

TEST_CASE("a plain stranger is refused and told in TLS terms; a silent one times out") {
  Reactor r;
  auto [a, b] = testing::socket_pair(SOCK_NONBLOCK);
  TlsGateOptions o;
  o.timeout = std::chrono::milliseconds(200);
  Side listener(r, psk_config(psk_file("gate-c.psk", kKeyA), TlsRole::listener), o);
  listener.gate->admit(std::move(a), SocketAddress{});
  const char hello[] = "\x44\x4c\x4e\x4b not tls at all, just a plain dialer's first bytes";
  REQUIRE(::send(b.get(), hello, sizeof hello, 0) > 0);
  REQUIRE(testing::run_until(r, [&] { return listener.done(); }));
  REQUIRE(listener.refused);
  CHECK(listener.refused->kind == ErrorKind::auth);
  std::uint8_t answer[16] = {};
  ssize_t n = ::recv(b.get(), answer, sizeof answer, 0);
  REQUIRE(n > 0);
  CHECK(is_tls_alert({answer, static_cast<std::size_t>(n)}));

  auto [c, d] = testing::socket_pair(SOCK_NONBLOCK);
  Side quiet(r, psk_config(psk_file("gate-d.psk", kKeyA), TlsRole::listener), o);
  quiet.gate->admit(std::move(c), SocketAddress{});
  REQUIRE(testing::run_until(r, [&] { return quiet.done(); }, std::chrono::seconds(3)));
  REQUIRE(quiet.refused);
  CHECK(quiet.refused->kind == ErrorKind::timeout);
}

TEST_CASE("a full gate evicts the busiest source's oldest handshake, not the real peer's") {
  Reactor r;
  TlsGateOptions o;
  o.max_pending = 3;
  std::vector<std::string> refused_peers;
  TlsGate gate(
      r, psk_config(psk_file("gate-e.psk", kKeyA), TlsRole::listener), o,
      [](std::unique_ptr<TlsSocket>, const SocketAddress&) {},
      [&](const Error&, const SocketAddress& peer) { refused_peers.push_back(peer.to_string()); });
  auto at = [](const std::string& text) { return resolve(*parse_dial_endpoint(text), false)->front(); };
  std::vector<Fd> quiet_ends;  // the far ends stay open and silent
  auto admit_from = [&](const std::string& peer) {
    auto [a, b] = testing::socket_pair(SOCK_NONBLOCK);
    quiet_ends.push_back(std::move(b));
    gate.admit(std::move(a), at(peer));
  };
  admit_from("127.0.0.1:5000");  // the real peer, oldest of all
  for (int i = 0; i < 4; ++i) admit_from("127.0.0.2:" + std::to_string(6000 + i));
  CHECK(gate.pending() == 3);
  REQUIRE(refused_peers.size() == 2);
  CHECK(refused_peers[0] == "127.0.0.2:6000");
  CHECK(refused_peers[1] == "127.0.0.2:6001");
}
