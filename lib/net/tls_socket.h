// tls_socket: one connected stream socket, read and written through TLS when it has a session
// and plainly when it has none, with socket manners (>0, 0 at the end, -1 and errno). It is the
// StreamLayer a Stream uses for keys, and what lean tools (dlping) read and write directly, so
// that their code does not care whether keys are in use. It owns the socket and the session;
// it does no handshake (tls_gate.h does, before anyone sees the connection). Not thread-safe.
#pragma once

#include <memory>

#include "lib/base/fd.h"
#include "lib/net/stream.h"
#include "lib/net/tls.h"

namespace dl {

class TlsSocket final : public StreamLayer {
 public:
  // `tls`: an established session over `fd`, or null for a plain socket.
  explicit TlsSocket(Fd fd, std::unique_ptr<TlsSession> tls = nullptr);
  ~TlsSocket() override;

  int fd() const override { return fd_.get(); }
  TlsSession* tls() const { return tls_.get(); }
  // Never blocks (MSG_DONTWAIT, whatever the socket's mode). EPROTO: failure() says why.
  ssize_t recv(void* buf, std::size_t len) override;
  ssize_t sendv(const iovec* iov, int count) override;
  ssize_t send(const void* buf, std::size_t len) {
    iovec v{const_cast<void*>(buf), len};
    return sendv(&v, 1);
  }
  bool has_buffered_input() const override { return tls_ && tls_->has_buffered_input(); }
  bool has_pending_output() const override;
  bool flush() override;
  // close_notify (once pending output is out; has_pending_output() until then), then FIN.
  void shutdown_write() override;
  std::optional<Error> failure() const override;

  // Gives up the socket and its session to a layer that drives them itself (the message link
  // reads, writes and shuts down through the TlsSession directly); this object is empty after.
  struct Parts {
    Fd fd;
    std::unique_ptr<TlsSession> tls;  // after fd: destroyed first
  };
  Parts release();

 private:
  Fd fd_;
  std::unique_ptr<TlsSession> tls_;  // after fd_: destroyed first, never outlives its socket
  bool shut_pending_ = false, shut_done_ = false, tls_failed_ = false;
};

}  // namespace dl
