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

// What a Stream reads and writes through instead of its socket: TLS (tls_socket.h). It owns
// the socket. Calls have socket manners (>0 bytes, 0 at the end, -1 with errno; EAGAIN: wait).
class StreamLayer {
 public:
  virtual ~StreamLayer() = default;
  virtual int fd() const = 0;
  virtual ssize_t recv(void* buf, std::size_t len) = 0;
  // Bytes taken may still wait inside the layer (has_pending_output) for the socket to drain.
  virtual ssize_t sendv(const iovec* iov, int count) = 0;
  // Input the layer holds already, which poll() cannot announce.
  virtual bool has_buffered_input() const = 0;
  virtual bool has_pending_output() const = 0;
  // Pushes pending output: true when none is left. Errors surface on the next sendv.
  virtual bool flush() = 0;
  // Ends our direction (the layer's own close message first), like shutdown(SHUT_WR).
  virtual void shutdown_write() = 0;
  // Why the last call failed, when the layer knows better than errno (nullopt: errno says it).
  virtual std::optional<Error> failure() const = 0;
};

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
  // Reads and writes through `layer` (which owns a connected socket). Input the layer holds is
  // delivered through the readable callback without waiting for poll(); output it holds is
  // pushed out when the socket drains (flushed() tells when all of it is gone).
  static std::unique_ptr<Stream> from_layer(Reactor& reactor, std::unique_ptr<StreamLayer> layer);
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
  // Nothing taken by writev() waits inside the layer any more (always true without one).
  bool flushed() const { return !layer_ || !layer_->has_pending_output(); }
  // The error for a failed read or write: the layer's own (a TLS failure) or errno's.
  Error io_error(ErrorKind kind, const std::string& what, int err) const;

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
  void deliver_buffered();

  Reactor& reactor_;
  Fd owned_;
  std::unique_ptr<StreamLayer> layer_;
  Reactor::Id buffered_hook_ = 0;
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
