#include "lib/net/tls_socket.h"

#include <sys/socket.h>

#include <cerrno>

namespace dl {

TlsSocket::TlsSocket(Fd fd, std::unique_ptr<TlsSession> tls) : fd_(std::move(fd)), tls_(std::move(tls)) {}

TlsSocket::~TlsSocket() = default;

ssize_t TlsSocket::recv(void* buf, std::size_t len) {
  if (tls_) {
    ssize_t n = tls_->recv(buf, len);
    if (n < 0 && errno == EPROTO) tls_failed_ = true;
    return n;
  }
  return ::recv(fd_.get(), buf, len, MSG_DONTWAIT);
}

ssize_t TlsSocket::sendv(const iovec* iov, int count) {
  if (tls_) {
    ssize_t n = tls_->sendv(iov, count);
    if (n < 0 && errno == EPROTO) tls_failed_ = true;
    return n;
  }
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov);
  m.msg_iovlen = static_cast<std::size_t>(count);
  return ::sendmsg(fd_.get(), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

bool TlsSocket::has_pending_output() const {
  // A failed session sends nothing more: nothing is pending (the error comes with the next call).
  return (tls_ && !tls_failed_ && tls_->has_pending_output()) || (shut_pending_ && !shut_done_);
}

bool TlsSocket::flush() {
  if (tls_ && !tls_failed_ && tls_->has_pending_output()) {
    TlsResult r = tls_->flush();
    if (r.status == TlsIo::failed) tls_failed_ = true;
    else if (tls_->has_pending_output()) return false;
  }
  if (shut_pending_ && !shut_done_) shutdown_write();
  return !has_pending_output();
}

void TlsSocket::shutdown_write() {
  if (shut_done_) return;
  shut_pending_ = true;
  if (tls_ && tls_->established()) {
    TlsIo r = tls_->shutdown();
    if (r == TlsIo::want_write || r == TlsIo::want_read) return;  // flush() tries again
  }
  shut_done_ = true;
  ::shutdown(fd_.get(), SHUT_WR);
}

TlsSocket::Parts TlsSocket::release() {
  Parts p;
  p.tls = std::move(tls_);
  p.fd = std::move(fd_);
  return p;
}

std::optional<Error> TlsSocket::failure() const {
  if (tls_failed_) return tls_->error();
  return std::nullopt;
}

}  // namespace dl
