#include "lib/base/fd.h"

#include <unistd.h>

namespace dl {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace dl
