// The dial side's handshake stage over real loopback sockets, against a TlsGate listener with
// pre-shared keys written at test time: without keys a connection is handed over as it
// connects; with the right key it comes out with its TLS session established; a wrong key is a
// refusal (auth, final) that stops the dialing until retry(), which dials again.
#include "lib/net/secure_connector.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "lib/net/net.h"
#include "lib/net/net_testing.h"
#include "lib/net/tls_testing.h"
#include "lib/net/tls_socket.h"

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

ConnectorOptions fast() {
  ConnectorOptions o;
  o.backoff.initial = 10ms;
  o.backoff.max = 50ms;
  o.deadline = Clock::now() + 5s;
  return o;
}

// A loopback port whose connections go through a listener's TlsGate (with keys) or are just
// accepted (without).
struct Server {
  Reactor& r;
  Listener l;
  Reactor::Id watch = 0;
  std::unique_ptr<TlsGate> gate;
  std::vector<std::unique_ptr<TlsSocket>> secured;
  std::vector<Fd> plain;
  std::optional<Error> refused;
  Server(Reactor& reactor, std::shared_ptr<TlsConfig> cfg) : r(reactor) {
    auto listening = listen_on(*parse_listen_endpoint("127.0.0.1:0"));
    REQUIRE(listening);
    l = std::move(*listening);
    if (cfg) {
      gate = std::make_unique<TlsGate>(
          r, std::move(cfg), TlsGateOptions{},
          [this](std::unique_ptr<TlsSocket> s, const SocketAddress&) { secured.push_back(std::move(s)); },
          [this](const Error& e, const SocketAddress&) { refused = e; });
    }
    watch = r.watch(l.fd.get(), POLLIN, [this](short) {
      SocketAddress peer;
      auto fd = accept_one(l.fd.get(), &peer);
      if (!fd || !fd->valid()) return;
      if (gate) gate->admit(std::move(*fd), peer);
      else plain.push_back(std::move(*fd));
    });
  }
  ~Server() { r.unwatch(watch); }
  Endpoint endpoint() const { return *parse_dial_endpoint("127.0.0.1:" + std::to_string(port_of(l.local))); }
};

struct Dial {
  std::optional<Result<SecureConnected>> got;
  std::optional<Error> refused;
  std::unique_ptr<SecureConnector> c;
  Dial(Reactor& r, const Endpoint& ep, std::shared_ptr<TlsConfig> cfg) {
    c = std::make_unique<SecureConnector>(
        r, ep, fast(), std::move(cfg), 2000ms, [this](Result<SecureConnected> res) { got = std::move(res); },
        [this](const Error& e) { refused = e; });
  }
};

}  // namespace

TEST_CASE("without keys a connection is handed over as soon as it connects") {
  Reactor r;
  Server s(r, nullptr);
  Dial d(r, s.endpoint(), nullptr);
  d.c->start();
  REQUIRE(run_until(r, [&] { return d.got.has_value(); }));
  REQUIRE(*d.got);
  CHECK((*d.got)->fd.valid());
  CHECK(!(*d.got)->tls);
  CHECK(!d.c->active());
}

TEST_CASE("with the right key the connection comes out with TLS established") {
  Reactor r;
  Server s(r, psk_config(psk_file("sc-a1.psk", kKeyA), TlsRole::listener));
  Dial d(r, s.endpoint(), psk_config(psk_file("sc-a2.psk", kKeyA), TlsRole::dialer));
  d.c->start();
  REQUIRE(run_until(r, [&] { return d.got.has_value() && !s.secured.empty(); }));
  REQUIRE(*d.got);
  REQUIRE((*d.got)->tls);
  CHECK((*d.got)->tls->established());
  CHECK((*d.got)->tls->peer_identity().find("datalink") != std::string::npos);
  CHECK(!d.c->active());
  CHECK(!d.refused);

  // Bytes go through the handed-over session and come out at the listener in clear.
  const char text[] = "hello through TLS";
  REQUIRE((*d.got)->tls->write({reinterpret_cast<const std::uint8_t*>(text), sizeof text}).status == TlsIo::ok);
  std::string got;
  REQUIRE(run_until(r, [&] {
    char buf[64];
    ssize_t n = s.secured[0]->recv(buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    return got.size() == sizeof text;
  }));
  CHECK(got == std::string(text, sizeof text));
}

TEST_CASE("a wrong key is a refusal that stops the dialing until retry()") {
  Reactor r;
  Server s(r, psk_config(psk_file("sc-b1.psk", kKeyA), TlsRole::listener));
  Dial d(r, s.endpoint(), psk_config(psk_file("sc-b2.psk", kKeyB), TlsRole::dialer));
  d.c->start();
  REQUIRE(run_until(r, [&] { return d.refused.has_value(); }));
  CHECK(d.refused->kind == ErrorKind::auth);
  CHECK(!is_retryable(*d.refused));
  CHECK(!d.got);
  CHECK(!d.c->active());
  REQUIRE(run_until(r, [&] { return s.refused.has_value(); }));

  // The caller decides to go on: one more dial, refused again (the keys did not change).
  d.refused.reset();
  d.c->retry(make_error(ErrorKind::auth, "test", "again"));
  CHECK(d.c->active());
  REQUIRE(run_until(r, [&] { return d.refused.has_value(); }));
  CHECK(d.refused->kind == ErrorKind::auth);
}
