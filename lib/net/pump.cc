#include "lib/net/pump.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dl {
namespace {

// A few rounds per wake-up, then back to the reactor so other descriptors get their turn.
constexpr int kRoundsPerWake = 8;

// splice(2) into a socket, and any write into a pipe, raise SIGPIPE when the reader is gone;
// a library must not kill its process for that. Unless the process ignores SIGPIPE already
// (the tools do), the signal is blocked around the call and a pending one taken back.
class SigpipeGuard {
 public:
  explicit SigpipeGuard(bool on) : on_(on) {
    if (!on_) return;
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeGuard() {
    if (!on_) return;
    int saved = errno;
    if (saved == EPIPE && !was_pending_) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      timespec zero{};
      ::sigtimedwait(&pipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    errno = saved;
  }

 private:
  bool on_;
  bool was_pending_ = false;
  sigset_t old_{};
};

bool sigpipe_ignored() {
  struct sigaction sa{};
  return ::sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

bool can_splice(const Stream& s) {
  return s.fd() >= 0 && (s.nonblocking() || s.type() == Stream::Type::file) &&
         s.type() != Stream::Type::tty;
}

}  // namespace

Pump::Pump(Stream& from, Stream& to, PumpOptions options, Done done)
    : from_(from), to_(to), opt_(options), done_(std::move(done)) {
  opt_.buffer = std::max<std::size_t>(opt_.buffer, 4096);
}

Pump::~Pump() {
  *alive_ = false;
  stop();
}

void Pump::start() {
  if (started_) return;
  started_ = true;
  if (opt_.splice && can_splice(from_) && can_splice(to_)) {
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
      pipe_r_.reset(p[0]);
      pipe_w_.reset(p[1]);
      ::fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(opt_.buffer));  // a hint; the kernel rounds
      int size = ::fcntl(p[1], F_GETPIPE_SZ);
      pipe_size_ = size > 0 ? static_cast<std::size_t>(size) : 65536;
      splicing_ = true;
    }
  }
  if (!splicing_) alloc_buffer(opt_.buffer);
  guard_sigpipe_ = !sigpipe_ignored();
  from_.on_readable([this] { on_readable(); });
  to_.on_writable([this] { on_writable(); });
  update();
}

void Pump::stop() {
  if (!started_) return;
  from_.want_read(false);
  to_.want_write(false);
  from_.on_readable({});
  to_.on_writable({});
  started_ = false;
  finished_ = true;
}

void Pump::update() {
  if (finished_) return;
  from_.want_read(!eof_ && room() > 0 && !pipe_full_);
  to_.want_write(held() > 0);
}

void Pump::finish(Status st) {
  if (finished_) return;
  stop();
  Done cb = std::move(done_);
  if (cb) cb(std::move(st));
}

// Left uninitialised on purpose: the kernel maps a large allocation's pages only when they are
// first written, so a relay of many quiet connections costs what they actually send.
void Pump::alloc_buffer(std::size_t n) {
  buf_.reset(new std::uint8_t[n]);
  cap_ = n;
}

void Pump::fall_back_to_copy() {
  // Whatever already sits in our pipe comes back into the buffer, in order.
  alloc_buffer(std::max(opt_.buffer, pipe_size_));
  off_ = len_ = 0;
  while (in_pipe_ > 0) {
    ssize_t n = ::read(pipe_r_.get(), buf_.get() + len_, in_pipe_);
    if (n <= 0) break;
    len_ += static_cast<std::size_t>(n);
    in_pipe_ -= static_cast<std::size_t>(n);
  }
  splicing_ = false;
  pipe_r_.reset();
  pipe_w_.reset();
}

bool Pump::read_some() {
  for (int i = 0; i < kRoundsPerWake && !eof_ && room() > 0; ++i) {
    ssize_t n;
    if (splicing_) {
      std::size_t want = room();
      n = ::splice(from_.fd(), nullptr, pipe_w_.get(), nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        fall_back_to_copy();
        continue;
      }
      if (n < 0 && errno == EAGAIN && in_pipe_ > 0) {
        // The pipe counts buffers, not bytes: a run of small segments fills its slots while
        // room() still shows bytes free. Then the source stays readable and a level-triggered
        // wait would spin; stop reading until a write empties some slots.
        int queued = 0;
        if (::ioctl(from_.fd(), FIONREAD, &queued) == 0 && queued > 0) pipe_full_ = true;
      }
      if (n > 0) {
        in_pipe_ += static_cast<std::size_t>(n);
        // Less than asked: the source is drained (or the pipe's slots are): write first.
        if (static_cast<std::size_t>(n) < want) break;
      }
    } else {
      if (off_ > 0 && len_ == cap_) {
        std::memmove(buf_.get(), buf_.get() + off_, len_ - off_);
        len_ -= off_;
        off_ = 0;
      }
      std::size_t want = cap_ - len_;
      n = from_.read(buf_.get() + len_, want);
      if (n > 0) {
        len_ += static_cast<std::size_t>(n);
        if (static_cast<std::size_t>(n) < want) break;  // drained: a further read would say EAGAIN
      }
    }
    if (n == 0) {
      eof_ = true;
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      finish(errno_error(ErrorKind::io, "read", errno));
      return false;
    }
  }
  return true;
}

bool Pump::write_some() {
  for (int i = 0; i < kRoundsPerWake && held() > 0; ++i) {
    ssize_t n;
    std::size_t asked = held();
    SigpipeGuard guard(guard_sigpipe_ && to_.type() != Stream::Type::file);
    if (splicing_) {
      n = ::splice(pipe_r_.get(), nullptr, to_.fd(), nullptr, asked, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        fall_back_to_copy();
        continue;
      }
      if (n > 0) {
        in_pipe_ -= static_cast<std::size_t>(n);
        pipe_full_ = false;
      }
    } else {
      n = to_.write(buf_.get() + off_, asked);
      if (n > 0) {
        off_ += static_cast<std::size_t>(n);
        if (off_ == len_) off_ = len_ = 0;
      }
    }
    if (n > 0) {
      bytes_ += static_cast<std::uint64_t>(n);
      // Less than asked: the destination is full. Wait for it to say so rather than make
      // another call that would only return EAGAIN.
      if (static_cast<std::size_t>(n) < asked) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    finish(errno_error(ErrorKind::io, "write", n < 0 ? errno : EIO));
    return false;
  }
  if (eof_ && held() == 0) {
    Status st = ok_status();
    if (opt_.shutdown_on_eof) st = to_.shutdown_write();
    finish(std::move(st));
    return false;
  }
  return true;
}

void Pump::on_readable() {
  auto alive = alive_;
  if (!read_some() || !*alive) return;
  // Write at once what just came in: one round trip through the reactor less per chunk.
  if (held() > 0 || eof_) {
    if (!write_some() || !*alive) return;
  }
  update();
}

void Pump::on_writable() {
  auto alive = alive_;
  if (!write_some() || !*alive) return;
  update();
}

}  // namespace dl
