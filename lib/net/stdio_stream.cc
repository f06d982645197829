#include "lib/net/stdio_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace dl {

StdStream StdStream::adopt(int fd, bool write_side) {
  StdStream s;
  s.fd_ = fd;
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    s.always_ready_ = true;  // let the first read/write report the real error
    return s;
  }
  if (S_ISSOCK(st.st_mode)) {
    s.socket_ = true;
    return s;
  }
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    s.is_pipe_ = S_ISFIFO(st.st_mode);
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    int flags = (write_side ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC;
    int own = ::open(path.c_str(), flags);
    if (own >= 0) {
      s.owned_.reset(own);
      s.fd_ = own;
      if (s.is_pipe_) {
        // Bigger pipes mean fewer wake-ups per megabyte; harmless if refused.
        ::fcntl(own, F_SETPIPE_SZ, 1 << 20);
      }
      return s;
    }
  }
  // Regular files, block devices, and anything we could not reopen: plain blocking calls.
  s.always_ready_ = true;
  return s;
}

ssize_t StdStream::read(void* buf, std::size_t len) {
  if (socket_) return ::recv(fd_, buf, len, MSG_DONTWAIT);
  return ::read(fd_, buf, len);
}

ssize_t StdStream::writev(const iovec* iov, int count) {
  if (socket_) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<std::size_t>(count);
    return ::sendmsg(fd_, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  return ::writev(fd_, iov, count);
}

}  // namespace dl
