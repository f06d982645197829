#include "lib/base/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "lib/base/fd.h"

namespace dl {

namespace {
std::string name_of(const std::string& path, std::string_view what) {
  return what.empty() ? path : std::string(what) + " " + path;
}
}  // namespace

Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes,
                             std::string_view what, bool durable, unsigned mode, bool replace) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  // The name is predictable: never open through what is already there (a symlink planted in a
  // shared directory such as /tmp would get a --gen-psk key written into its target). A stale
  // file of ours goes; one we may not remove (sticky directory) makes O_EXCL fail: an error.
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return errno_error(ErrorKind::io, name_of(path, what), errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::unlink(tmp.c_str());
      return errno_error(ErrorKind::io, name_of(path, what), err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (durable && ::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_error(ErrorKind::io, name_of(path, what), err);
  }
  fd.reset();
  // link() never replaces: whoever links first creates the file, the others get EEXIST.
  if (replace ? ::rename(tmp.c_str(), path.c_str()) != 0 : ::link(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_error(ErrorKind::io, name_of(path, what), err);
  }
  if (!replace) ::unlink(tmp.c_str());
  if (durable) {
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.valid()) ::fsync(d.get());  // best effort: some file systems refuse directory fsync
  }
  return ok_status();
}

Result<std::string> read_small_file(const std::string& path, std::size_t limit, std::string_view what) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(ErrorKind::io, name_of(path, what), errno);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(ErrorKind::io, name_of(path, what), errno);
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > limit) {
      return make_error(ErrorKind::too_large, name_of(path, what),
                        "larger than " + std::to_string(limit) + " bytes");
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace dl
