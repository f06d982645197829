#include "lib/net/secure_connector.h"

#include "lib/net/tls_socket.h"

namespace dl {

SecureConnector::SecureConnector(Reactor& reactor, Endpoint endpoint, ConnectorOptions options,
                                 std::shared_ptr<TlsConfig> tls, std::chrono::milliseconds handshake_timeout,
                                 Done done, Refused on_refused)
    : reactor_(reactor),
      tls_(std::move(tls)),
      handshake_timeout_(handshake_timeout),
      verify_host_(endpoint.kind == Endpoint::Kind::tcp ? endpoint.host : std::string()),
      done_(std::move(done)),
      on_refused_(std::move(on_refused)),
      connector_(reactor, std::move(endpoint), std::move(options),
                 [this](Result<Connected> r) { on_connected(std::move(r)); }) {}

void SecureConnector::start() {
  gate_.reset();
  connector_.start();
}

void SecureConnector::retry(Error why) {
  gate_.reset();
  connector_.retry(std::move(why));
}

void SecureConnector::cancel() {
  gate_.reset();
  connector_.cancel();
}

void SecureConnector::on_connected(Result<Connected> r) {
  if (!r) {
    Done cb = done_;  // a copy: the callback may destroy us
    cb(r.error());
    return;
  }
  if (!tls_) {
    Done cb = done_;
    cb(SecureConnected{std::move(r->fd), nullptr, r->peer});
    return;
  }
  if (!gate_) {
    TlsGateOptions go;
    go.timeout = handshake_timeout_;
    go.max_pending = 1;  // one dial, one handshake
    gate_ = std::make_unique<TlsGate>(
        reactor_, tls_, go,
        [this](std::unique_ptr<TlsSocket> socket, const SocketAddress& peer) {
          auto parts = socket->release();
          Done cb = done_;
          cb(SecureConnected{std::move(parts.fd), std::move(parts.tls), peer});
        },
        [this](const Error& why, const SocketAddress&) {
          Refused cb = on_refused_;
          cb(why);
        });
  }
  gate_->admit(std::move(r->fd), r->peer, verify_host_);
}

}  // namespace dl
