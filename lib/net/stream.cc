#include "lib/net/stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace dl {
namespace {

Stream::Type type_of(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return Stream::Type::other;
  if (S_ISSOCK(st.st_mode)) return Stream::Type::socket;
  if (S_ISFIFO(st.st_mode)) return Stream::Type::pipe;
  if (S_ISCHR(st.st_mode)) return ::isatty(fd) ? Stream::Type::tty : Stream::Type::other;
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return Stream::Type::file;
  return Stream::Type::other;
}

bool is_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

}  // namespace

std::unique_ptr<Stream> Stream::from_fd(Reactor& reactor, Fd fd) {
  std::unique_ptr<Stream> s(new Stream(reactor));
  s->fd_ = fd.get();
  s->type_ = type_of(fd.get());
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK);
  s->nonblocking_ = is_nonblocking(fd.get());
  s->owned_ = std::move(fd);
  return s;
}

std::unique_ptr<Stream> Stream::from_layer(Reactor& reactor, std::unique_ptr<StreamLayer> layer) {
  std::unique_ptr<Stream> s(new Stream(reactor));
  s->fd_ = layer->fd();
  s->type_ = Type::socket;
  int fl = ::fcntl(s->fd_, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(s->fd_, F_SETFL, fl | O_NONBLOCK);
  s->nonblocking_ = false;  // bytes on the socket are not the plaintext: never splice
  s->layer_ = std::move(layer);
  Stream* p = s.get();
  s->buffered_hook_ = reactor.before_poll([p] { p->deliver_buffered(); });
  return s;
}

std::unique_ptr<Stream> Stream::from_inherited(Reactor& reactor, int fd, bool write_side) {
  std::unique_ptr<Stream> s(new Stream(reactor));
  s->type_ = type_of(fd);
  s->std_ = StdStream::adopt(fd, write_side);
  s->fd_ = s->std_->poll_fd();
  s->inherited_fd_ = write_side ? fd : -1;
  s->nonblocking_ = s->fd_ != fd && is_nonblocking(s->fd_);  // a private reopened description
  return s;
}

Stream::~Stream() {
  *alive_ = false;
  if (watch_) reactor_.unwatch(watch_);
  if (buffered_hook_) reactor_.remove_before_poll(buffered_hook_);
}

Error Stream::io_error(ErrorKind kind, const std::string& what, int err) const {
  if (layer_) {
    if (auto e = layer_->failure()) return *e;
  }
  return errno_error(kind, what, err);
}

// Input the layer decrypted already raises no poll() event: hand it over before sleeping, and
// if the reader stopped early (its own budget), make the reactor come round again at once.
void Stream::deliver_buffered() {
  if (!layer_ || !want_read_ || !read_cb_ || !layer_->has_buffered_input()) return;
  auto alive = alive_;
  Callback cb = read_cb_;
  cb();
  if (*alive && layer_ && want_read_ && layer_->has_buffered_input()) reactor_.request_pass();
}

ssize_t Stream::read(void* buf, std::size_t len) {
  if (fd_ < 0) {
    errno = EBADF;
    return -1;
  }
  if (std_) return std_->read(buf, len);
  if (layer_) return layer_->recv(buf, len);
  if (type_ == Type::socket) return ::recv(fd_, buf, len, 0);
  return ::read(fd_, buf, len);
}

ssize_t Stream::writev(const iovec* iov, int count) {
  if (fd_ < 0 || write_shut_) {
    errno = write_shut_ ? EPIPE : EBADF;
    return -1;
  }
  if (std_) return std_->writev(iov, count);
  if (layer_) {
    ssize_t n = layer_->sendv(iov, count);
    if (layer_->has_pending_output()) update();  // POLLOUT until the layer has sent it all
    return n;
  }
  if (type_ == Type::socket) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<std::size_t>(count);
    return ::sendmsg(fd_, &m, MSG_NOSIGNAL);
  }
  return ::writev(fd_, iov, count);
}

ssize_t Stream::write(const void* buf, std::size_t len) {
  iovec v{const_cast<void*>(buf), len};
  return writev(&v, 1);
}

Status Stream::shutdown_write() {
  if (write_shut_) return ok_status();
  write_shut_ = true;
  want_write_ = false;
  if (layer_) {
    layer_->shutdown_write();
    update();
    return ok_status();
  }
  if (type_ == Type::socket) {
    if (::shutdown(fd_, SHUT_WR) != 0 && errno != ENOTCONN) return errno_error(ErrorKind::io, "shutdown", errno);
    update();
    return ok_status();
  }
  // Not a socket: the only way to say "no more" is to close every writing descriptor.
  if (watch_) reactor_.unwatch(watch_);
  watch_ = 0;
  if (std_) {
    std_.reset();  // closes the reopened description, if one was made
    if (inherited_fd_ >= 0) {
      Fd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
      if (null.valid() && ::dup2(null.get(), inherited_fd_) < 0) {
        return errno_error(ErrorKind::io, "close fd " + std::to_string(inherited_fd_), errno);
      }
    }
  } else {
    owned_.reset();
  }
  fd_ = -1;
  return ok_status();
}

void Stream::want_read(bool on) {
  if (want_read_ == on) return;
  want_read_ = on;
  update();
}

void Stream::want_write(bool on) {
  if (write_shut_) on = false;
  if (want_write_ == on) return;
  want_write_ = on;
  update();
}

void Stream::update() {
  bool layer_out = layer_ && layer_->has_pending_output();
  short ev = static_cast<short>((want_read_ ? POLLIN : 0) | (want_write_ || layer_out ? POLLOUT : 0));
  if (fd_ < 0) return;
  if (!watch_) {
    if (ev == 0) return;
    watch_ = reactor_.watch(fd_, ev, [this](short rev) { on_event(rev); });
    return;
  }
  reactor_.set_events(watch_, ev);
}

void Stream::on_event(short revents) {
  auto alive = alive_;
  const short bad = POLLERR | POLLHUP | POLLNVAL;
  if (want_read_ && (revents & (POLLIN | POLLRDHUP | bad)) && read_cb_) {
    Callback cb = read_cb_;
    cb();
    if (!*alive) return;
  }
  bool drained = false;
  if (layer_ && layer_->has_pending_output() && (revents & (POLLOUT | bad))) {
    drained = layer_->flush();
    if (drained && !want_write_) update();
  }
  // A writer waiting for the layer to drain (closing) hears of it like a writable socket.
  if ((want_write_ || drained) && (revents & (POLLOUT | bad)) && write_cb_) {
    Callback cb = write_cb_;
    cb();
  }
}

}  // namespace dl
