// SecureConnector: the dial side's counterpart of a listener's TlsGate. A Connector dials (with
// backoff, a fresh name lookup every round, see connector.h); with keys, each connection then
// goes through its TLS handshake in a TlsGate before it is handed over. The caller only ever
// gets a ready connection (socket and, with keys, an established and verified TLS session), in
// the same shape a listener hands over its newcomers.
//
// It is not a link: no sessions, and no opinion on a failed handshake. That is reported through
// `on_refused`, and the caller decides whether to dial again (retry(), after the backoff, same
// deadline) or to give up: whether an auth failure is final depends on what the caller knows of
// the peer (a peer that accepted us before more likely had the handshake mangled on the path).
// Non-blocking and reactor-driven; not thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/connector.h"
#include "lib/net/endpoint.h"
#include "lib/net/reactor.h"
#include "lib/net/tls.h"
#include "lib/net/tls_gate.h"

namespace dl {

// A dialed connection whose handshake is done. Declared fd first, so the TLS session that uses
// the socket goes first.
struct SecureConnected {
  Fd fd;
  std::unique_ptr<TlsSession> tls;  // with keys: established and verified; null without keys
  SocketAddress peer;
};

class SecureConnector {
 public:
  // A ready connection, or the last dial error once the deadline passed (the Connector's
  // errors: usage, resolve, connect, timeout). Called once per start() or retry() that
  // produced no refusal. May destroy the SecureConnector.
  using Done = std::function<void(Result<SecureConnected>)>;
  // A connection that failed its TLS handshake (already closed), with TlsSession's errors: auth
  // (marked final) for identity, a retryable protocol/disconnected/timeout otherwise. The
  // dialing has stopped: call retry() to go on. May destroy the SecureConnector.
  using Refused = std::function<void(const Error& why)>;

  // `tls`: the dialer's key material (tickets are kept there, so a redial resumes); null dials
  // plain connections and hands them over as soon as they connect. `handshake_timeout` bounds
  // each TLS handshake.
  SecureConnector(Reactor& reactor, Endpoint endpoint, ConnectorOptions options, std::shared_ptr<TlsConfig> tls,
                  std::chrono::milliseconds handshake_timeout, Done done, Refused on_refused);
  SecureConnector(const SecureConnector&) = delete;
  SecureConnector& operator=(const SecureConnector&) = delete;

  // As Connector's (never block): start() dials now, retry(why) after the backoff's next delay
  // (past the deadline: Done gets `why` at once), cancel() drops the dial and any handshake.
  void start();
  void retry(Error why);
  void cancel();
  // Dialing, or a connection in its TLS handshake.
  bool active() const { return connector_.active() || (gate_ && gate_->pending() > 0); }

 private:
  void on_connected(Result<Connected> r);

  Reactor& reactor_;
  std::shared_ptr<TlsConfig> tls_;
  std::chrono::milliseconds handshake_timeout_;
  std::string verify_host_;  // tcp: the name dialed, checked against the listener's certificate
  Done done_;
  Refused on_refused_;
  Connector connector_;
  std::unique_ptr<TlsGate> gate_;  // with keys, while a handshake runs
};

}  // namespace dl
