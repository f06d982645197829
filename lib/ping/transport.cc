#include "lib/ping/transport.h"

#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dl::ping {

Result<Target> parse_target(const std::string& text, bool listen) {
  auto ep = listen ? parse_listen_endpoint(text) : parse_dial_endpoint(text);
  if (!ep) return ep.error();
  Target t;
  t.endpoint = *ep;
  t.udp = ep->kind == Endpoint::Kind::udp;
  t.text = ep->to_string();
  return t;
}

namespace {
Result<Fd> udp_socket(const Target& t, bool passive, SocketAddress* addr) {
  auto addrs = resolve(t.endpoint, passive);
  if (!addrs) return addrs.error();
  Error last = make_error(ErrorKind::connect, t.text, "no address");
  for (const SocketAddress& a : *addrs) {
    Fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = errno_error(ErrorKind::connect, "socket " + a.to_string(), errno);
      continue;
    }
    if (passive) {
      int zero = 0;
      if (a.family() == AF_INET6 && t.endpoint.host.empty())
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
      if (::bind(fd.get(), a.get(), a.length) != 0) {
        last = errno_error(ErrorKind::connect, "bind " + a.to_string(), errno);
        continue;
      }
      SocketAddress local;
      local.length = sizeof local.storage;
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local.storage), &local.length);
      if (addr) *addr = local;
    } else {
      if (::connect(fd.get(), a.get(), a.length) != 0) {
        last = errno_error(ErrorKind::connect, "connect " + a.to_string(), errno);
        continue;
      }
      if (addr) *addr = a;
    }
    return fd;
  }
  return last;
}
}  // namespace

Result<Fd> udp_connect(const Target& t, SocketAddress* peer) { return udp_socket(t, false, peer); }
Result<Fd> udp_bind(const Target& t, SocketAddress* local) { return udp_socket(t, true, local); }

void socket_busy_poll(int fd) {
  int us = 50;
  setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof us);
}

Status pin_to_cpu(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return make_error(ErrorKind::usage, "--cpu " + std::to_string(cpu), "no such CPU");
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    if (errno == EINVAL) return make_error(ErrorKind::usage, "--cpu " + std::to_string(cpu), "not a CPU this process may use");
    return errno_error(ErrorKind::io, "--cpu " + std::to_string(cpu), errno);
  }
  return ok_status();
}

void InBuffer::consume(std::size_t n) {
  start_ += n;
  if (start_ == end_) start_ = end_ = 0;
}

void InBuffer::reserve_total(std::size_t n) {
  if (buf_.size() - start_ >= n) return;
  if (start_ > 0) {
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  if (buf_.size() < n) buf_.resize(n);
}

void InBuffer::make_room(bool datagram) {
  if (datagram) {
    start_ = end_ = 0;  // one datagram at a time; the caller handled the previous one
    if (buf_.size() < 65536) buf_.resize(65536);
  } else if (end_ == buf_.size()) {
    // Full: move what is there to the front, and double when that frees nothing. The decoders
    // refuse a frame (or line) above its limit first, so this stays bounded by about twice that.
    if (start_ > 0) {
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    if (buf_.size() - end_ < buf_.size() / 2) buf_.resize(buf_.size() * 2);
  }
}

long InBuffer::read_from(int fd, bool datagram, bool wait) {
  make_room(datagram);
  ssize_t n = ::recv(fd, buf_.data() + end_, buf_.size() - end_, wait ? 0 : MSG_DONTWAIT);
  if (n > 0) end_ += static_cast<std::size_t>(n);
  return n;
}

long InBuffer::read_from(StreamLayer& s) {
  make_room(false);
  ssize_t n = s.recv(buf_.data() + end_, buf_.size() - end_);
  if (n > 0) end_ += static_cast<std::size_t>(n);
  return n;
}

void OutBuffer::append(const void* p, std::size_t n) {
  if (off_ > 0 && off_ == buf_.size()) {
    buf_.clear();
    off_ = 0;
  }
  auto b = static_cast<const std::uint8_t*>(p);
  buf_.insert(buf_.end(), b, b + n);
}

Status OutBuffer::flush(StreamLayer& s) {
  if (s.has_pending_output() && !s.flush()) return ok_status();
  while (off_ < buf_.size()) {
    iovec v{buf_.data() + off_, buf_.size() - off_};
    ssize_t n = s.sendv(&v, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (auto e = s.failure()) return *e;
      return errno_error(errno == EPIPE || errno == ECONNRESET ? ErrorKind::disconnected : ErrorKind::io, "send",
                         errno);
    }
    off_ += static_cast<std::size_t>(n);
  }
  if (off_ == buf_.size()) {
    buf_.clear();
    off_ = 0;
  }
  return ok_status();
}

}  // namespace dl::ping
