// Stream: a non-blocking byte stream over one descriptor of any kind (socket, pipe, FIFO,
// terminal, regular file), with read, writev, a half-close (shutdown_write) and readable /
// writable callbacks through the reactor. Inherited descriptors (stdin, stdout) are handled
// as StdStream does, without flipping O_NONBLOCK on a description other processes share.
//
// Not a buffer and not a protocol: callers own their memory; Pump (pump.h) moves bytes from
// one Stream to another. Not thread-safe.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <functional>
#include <memory>
#include <optional>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/reactor.h"
#include "lib/net/stdio_stream.h"

namespace dl {

class Stream {
 public:
  enum class Type { socket, pipe, tty, file, other };
  using Callback = std::function<void()>;

  // Takes ownership of `fd` (a connected socket, a pipe end, an open file) and makes it
  // non-blocking (it is ours alone). Closed on destruction.
  static std::unique_ptr<Stream> from_fd(Reactor& reactor, Fd fd);
  // Uses an inherited descriptor for reading (`write_side` false) or writing. The number
  // stays open; shutdown_write() points it at /dev/null so that the reader downstream sees
  // end of file while the number stays taken (a later socket must never become "stdout").
  static std::unique_ptr<Stream> from_inherited(Reactor& reactor, int fd, bool write_side);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Like read(2) / writev(2): >0 bytes, read 0 at end of stream, -1 with errno (EAGAIN:
  // nothing now, wait for the callback). Writes never raise SIGPIPE on sockets (EPIPE
  // instead); on pipes that depends on the process ignoring SIGPIPE, as the tools do.
  ssize_t read(void* buf, std::size_t len);
  ssize_t writev(const iovec* iov, int count);
  ssize_t write(const void* buf, std::size_t len);
  // Half-close: the peer reads end of stream, we may still read. Sockets: shutdown(SHUT_WR);
  // pipes, files, terminals: close the writing descriptor. Idempotent. Errors: io.
  Status shutdown_write();
  bool write_shut() const { return write_shut_; }

  // Readiness callbacks, called while wanted and ready (level-triggered). Errors and
  // hang-ups count as ready for both: the next read or write tells what happened. A callback
  // may destroy the Stream.
  void on_readable(Callback cb) { read_cb_ = std::move(cb); }
  void on_writable(Callback cb) { write_cb_ = std::move(cb); }
  void want_read(bool on);
  void want_write(bool on);

  Type type() const { return type_; }
  // The descriptor reads and writes go to; -1 once closed. For splice(2) and diagnostics.
  int fd() const { return fd_; }
  // True when fd() itself is O_NONBLOCK (ours, or privately reopened): splice(2) may be used.
  bool nonblocking() const { return nonblocking_; }

 private:
  Stream(Reactor& r) : reactor_(r) {}
  void update();
  void on_event(short revents);

  Reactor& reactor_;
  Fd owned_;
  std::optional<StdStream> std_;
  int fd_ = -1;
  int inherited_fd_ = -1;  // the number to point at /dev/null on shutdown_write
  Type type_ = Type::other;
  bool nonblocking_ = false;
  bool want_read_ = false, want_write_ = false, write_shut_ = false;
  Reactor::Id watch_ = 0;
  Callback read_cb_, write_cb_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl
