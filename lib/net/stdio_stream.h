// StdStream: non-blocking reads and writes on an inherited descriptor (stdin, stdout, a file)
// WITHOUT setting O_NONBLOCK on it: that flag lives in the open file description, which the
// shell and every other process in the pipeline share, and flipping it breaks them.
// Pipes, FIFOs and terminals are reopened through /proc/self/fd (a private description);
// sockets use MSG_DONTWAIT; regular files are always ready and use plain calls.
// Not a buffer: callers own their memory.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include "lib/net/net.h"

namespace dl {

class StdStream {
 public:
  // `write_side`: open for writing. The original fd stays open and owned by the caller.
  static StdStream adopt(int fd, bool write_side);

  int poll_fd() const { return fd_; }
  // Regular files (and the fallback) never report "not ready": poll them only for errors.
  bool always_ready() const { return always_ready_; }
  // Like read(2)/writev(2); -1 with errno EAGAIN when nothing can be done now.
  ssize_t read(void* buf, std::size_t len);
  ssize_t writev(const iovec* iov, int count);
  bool is_pipe() const { return is_pipe_; }

 private:
  int fd_ = -1;
  Fd owned_;
  bool socket_ = false, always_ready_ = false, is_pipe_ = false;
};

}  // namespace dl
