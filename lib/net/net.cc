#include "lib/net/net.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace dl {

Listener::~Listener() {
  // Only the socket we made: if someone replaced it meanwhile, theirs stays.
  struct stat st{};
  if (!unix_path.empty() && fd.valid() && ::lstat(unix_path.c_str(), &st) == 0 &&
      S_ISSOCK(st.st_mode) && st.st_dev == unix_dev && st.st_ino == unix_ino) {
    ::unlink(unix_path.c_str());
  }
}
Listener::Listener(Listener&& o) noexcept
    : fd(std::move(o.fd)),
      local(o.local),
      unix_path(std::exchange(o.unix_path, {})),
      unix_dev(o.unix_dev),
      unix_ino(o.unix_ino) {}
Listener& Listener::operator=(Listener&& o) noexcept {
  fd = std::move(o.fd);
  local = o.local;
  unix_path = std::exchange(o.unix_path, {});
  unix_dev = o.unix_dev;
  unix_ino = o.unix_ino;
  return *this;
}

namespace {

int new_socket(int family) {
  return ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

const char* file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a socket";
}

// What to do about an existing file at a unix listen path. Only a socket nobody accepts on
// (left by a crashed process) may be replaced; anything else is the user's and stays.
// Returns ok when the path may be bound again (stale socket removed).
Status clear_stale_unix_socket(const std::string& path, const SocketAddress& a) {
  std::string ctx = "listen unix:" + path;
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return errno_error(ErrorKind::connect, ctx, errno);
  if (!S_ISSOCK(st.st_mode)) {
    return make_error(ErrorKind::connect, ctx,
                      std::string(file_kind(st.st_mode)) + " is in the way (only a stale socket is replaced)");
  }
  Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return errno_error(ErrorKind::connect, ctx, errno);
  if (::connect(probe.get(), a.get(), a.length) == 0 || errno != ECONNREFUSED) {
    return make_error(ErrorKind::connect, ctx, "another process is listening on it");
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error(ErrorKind::connect, ctx, errno);
  return ok_status();
}

// A unix client rarely binds a name, so its address says nothing ("unix:"). Name it by the
// socket it came through and its process id instead: "unix:/run/dl.sock (pid 4242)".
void describe_unix_peer(int listen_fd, int fd, SocketAddress& a) {
  if (a.length > offsetof(sockaddr_un, sun_path) + 1) return;  // the peer has a name of its own
  SocketAddress local;
  local.length = sizeof local.storage;
  if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&local.storage), &local.length) == 0) a = local;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) a.unix_peer_pid = cred.pid;
}

}  // namespace

std::uint16_t port_of(const SocketAddress& a) {
  if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  if (a.family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
  }
  return 0;
}

Result<Listener> listen_on(const Endpoint& endpoint, int backlog) {
  if (!endpoint.is_stream()) {
    return make_error(ErrorKind::usage, "listen " + endpoint.to_string(),
                      "a datagram (udp:) endpoint cannot take stream connections");
  }
  auto addrs = resolve(endpoint, true);
  if (!addrs) return addrs.error();
  Error last = make_error(ErrorKind::connect, "listen " + endpoint.to_string(), "no address");
  for (const SocketAddress& a : *addrs) {
    Fd fd(new_socket(a.family()));
    if (!fd.valid()) {
      last = errno_error(ErrorKind::connect, "socket " + a.to_string(), errno);
      continue;
    }
    int one = 1, zero = 0;
    if (a.family() != AF_UNIX) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a.family() == AF_INET6 && endpoint.host.empty()) {
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    int rc = ::bind(fd.get(), a.get(), a.length);
    if (rc != 0 && errno == EADDRINUSE && a.family() == AF_UNIX) {
      if (auto st = clear_stale_unix_socket(endpoint.path, a); !st) return st.error();
      rc = ::bind(fd.get(), a.get(), a.length);
    }
    if (rc != 0) {
      last = errno_error(ErrorKind::connect, "bind " + a.to_string(), errno);
      continue;
    }
    if (::listen(fd.get(), backlog) != 0) {
      last = errno_error(ErrorKind::connect, "listen " + a.to_string(), errno);
      continue;
    }
    Listener l;
    l.local.length = sizeof l.local.storage;
    if (a.family() == AF_UNIX) {
      l.local = a;
      l.unix_path = endpoint.path;
      struct stat st{};
      if (::lstat(endpoint.path.c_str(), &st) == 0) {
        l.unix_dev = st.st_dev;
        l.unix_ino = st.st_ino;
      }
    } else {
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&l.local.storage), &l.local.length);
    }
    l.fd = std::move(fd);
    return l;
  }
  return last;
}

Result<Fd> start_connect(const SocketAddress& address) {
  Fd fd(new_socket(address.family()));
  if (!fd.valid()) return errno_error(ErrorKind::connect, "socket " + address.to_string(), errno);
  tune_stream_socket(fd.get());
  // Only EINPROGRESS means "under way". EAGAIN is a failure: a unix listener's backlog is
  // full (or TCP ran out of local ports), and the socket is not connecting at all.
  if (::connect(fd.get(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
    return errno_error(ErrorKind::connect, "connect " + address.to_string(), errno);
  }
  return fd;
}

Status finish_connect(int fd, const SocketAddress& address) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) return errno_error(ErrorKind::connect, "connect " + address.to_string(), err);
  return ok_status();
}

Result<Fd> accept_one(int listen_fd, SocketAddress* peer) {
  SocketAddress a;
  a.length = sizeof a.storage;
  int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      return Fd();
    }
    return errno_error(ErrorKind::connect, "accept", errno);
  }
  tune_stream_socket(fd);
  if (a.family() == AF_UNIX) describe_unix_peer(listen_fd, fd, a);
  if (peer) *peer = a;
  return Fd(fd);
}

void tune_stream_socket(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family == AF_UNIX) {
    int size = kUnixSocketBuffer;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

namespace {

// The IP of an AF_INET/AF_INET6 address as 16 bytes (IPv4 as IPv4-mapped IPv6); false otherwise.
bool ip_bytes(const sockaddr_storage& ss, std::array<std::uint8_t, 16>& out) {
  if (ss.ss_family == AF_INET6) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, 16);
    return true;
  }
  if (ss.ss_family == AF_INET) {
    out = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(out.data() + 12, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, 4);
    return true;
  }
  return false;
}

}  // namespace

bool peer_is_local(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t llen = sizeof local, plen = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0) return false;
  if (local.ss_family == AF_UNIX) return true;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) return false;
  std::array<std::uint8_t, 16> l{}, p{};
  if (!ip_bytes(local, l) || !ip_bytes(peer, p)) return false;
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  bool mapped = std::memcmp(p.data(), kMapped, 12) == 0;
  if (mapped && p[12] == 127) return true;                     // 127.0.0.0/8
  static constexpr std::uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(p.data(), kLoop6, 16) == 0) return true;     // ::1
  return l == p;
}

}  // namespace dl
