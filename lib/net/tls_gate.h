// tls_gate: the TLS handshake a connection goes through before it is anyone's. A listener's
// strangers are refused here, before a byte of theirs reaches the application; a dialer's
// connection comes out authenticated or not at all. Handshakes are stepped by the reactor,
// bounded in time (a stranger holds a descriptor at most `timeout`) and in number (at most
// `max_pending`; the oldest of the source holding the most makes room for a newcomer, see
// evict.h, so a flood of idle strangers cannot lock the real peer out). A plain dialer that
// reaches a listener gets a TLS alert (send_tls_refusal) so that our tools can say "the
// listener speaks TLS".
//
// It is not a link: no retries, no sessions. Used by the lean tools (dlping, pymodaq-emu) and by
// the message link's SessionListener (listener side) and SecureConnector (dial side), which take
// the socket and session apart (TlsSocket::release). Not thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/net.h"
#include "lib/net/reactor.h"
#include "lib/net/tls.h"
#include "lib/net/tls_socket.h"

namespace dl {

struct TlsGateOptions {
  std::chrono::milliseconds timeout{5000};  // per handshake
  std::size_t max_pending = 64;             // handshakes at once
};

class TlsGate {
 public:
  // `on_secured`: a connection whose handshake succeeded (TLS established, peer verified).
  // `on_refused`: one whose handshake failed or timed out (the socket is closed already);
  // errors as TlsSession's: auth (final) for identity, disconnected/timeout/protocol otherwise.
  // Both may destroy the gate.
  using OnSecured = std::function<void(std::unique_ptr<TlsSocket> socket, const SocketAddress& peer)>;
  using OnRefused = std::function<void(const Error& why, const SocketAddress& peer)>;

  TlsGate(Reactor& reactor, std::shared_ptr<TlsConfig> config, TlsGateOptions options, OnSecured on_secured,
          OnRefused on_refused);
  ~TlsGate();
  TlsGate(const TlsGate&) = delete;
  TlsGate& operator=(const TlsGate&) = delete;

  // Starts the handshake on `fd` (connected; made non-blocking). A dialer passes the host it
  // dialed as `verify_host` (checked against the listener's certificate with --ca).
  void admit(Fd fd, const SocketAddress& peer, std::string verify_host = {});
  std::size_t pending() const { return pending_.size(); }
  const std::shared_ptr<TlsConfig>& config() const { return config_; }

 private:
  struct Pending;
  void step(Pending* p);
  void refuse(Pending* p, Error why);
  void rearm();
  void expire();

  Reactor& reactor_;
  std::shared_ptr<TlsConfig> config_;
  TlsGateOptions options_;
  OnSecured on_secured_;
  OnRefused on_refused_;
  std::vector<std::unique_ptr<Pending>> pending_;
  Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl
