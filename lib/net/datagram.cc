#include "lib/net/datagram.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace dl {

namespace {

void set_buffers(int fd, std::size_t bytes) {
  int n = static_cast<int>(std::min<std::size_t>(bytes, 1u << 30));
  // The FORCE variants pass net.core.[rw]mem_max when we have CAP_NET_ADMIN; else the plain
  // ones get as much as the sysctl allows.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof n) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof n);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &n, sizeof n) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof n);
  }
}

bool probe_gso(int fd) {
  int seg = 0;
  socklen_t len = sizeof seg;
  // Reading the option tells whether the kernel knows it; the segment size itself is given
  // per message (cmsg), so the socket default stays 0.
  return getsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, &len) == 0;
}

Result<DatagramSocket> finish(Fd fd, std::size_t buffer_bytes) {
  DatagramSocket s;
  set_buffers(fd.get(), buffer_bytes);
  s.gso = probe_gso(fd.get());
  s.local.length = sizeof s.local.storage;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&s.local.storage), &s.local.length);
  s.fd = std::move(fd);
  return s;
}

}  // namespace

Result<DatagramSocket> bind_datagram(const Endpoint& endpoint, std::size_t buffer_bytes) {
  if (endpoint.kind == Endpoint::Kind::unix_socket) {
    return make_error(ErrorKind::usage, endpoint.to_string(), "a datagram endpoint needs [HOST:]PORT or udp:");
  }
  auto addrs = resolve(endpoint, true);
  if (!addrs) return addrs.error();
  Error last = make_error(ErrorKind::connect, "bind " + endpoint.to_string(), "no address");
  for (const SocketAddress& a : *addrs) {
    Fd fd(::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = errno_error(ErrorKind::connect, "socket " + a.to_string(), errno);
      continue;
    }
    int zero = 0;
    if (a.family() == AF_INET6 && endpoint.host.empty()) {
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (::bind(fd.get(), a.get(), a.length) != 0) {
      last = errno_error(ErrorKind::connect, "bind " + a.to_string(), errno);
      continue;
    }
    return finish(std::move(fd), buffer_bytes);
  }
  return last;
}

Result<DatagramSocket> dial_datagram(const SocketAddress& peer, std::size_t buffer_bytes) {
  Fd fd(::socket(peer.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error(ErrorKind::connect, "socket " + peer.to_string(), errno);
  if (::connect(fd.get(), peer.get(), peer.length) != 0) {
    return errno_error(ErrorKind::connect, "connect " + peer.to_string(), errno);
  }
  return finish(std::move(fd), buffer_bytes);
}

bool enable_gro(DatagramSocket& s, bool want) {
  int one = want ? 1 : 0;
  s.gro = want && setsockopt(s.fd.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  return s.gro;
}

Result<bool> send_datagram(int fd, std::span<const std::uint8_t> bytes, const SocketAddress* to) {
  for (;;) {
    ssize_t n = to ? ::sendto(fd, bytes.data(), bytes.size(), 0, to->get(), to->length)
                   : ::send(fd, bytes.data(), bytes.size(), 0);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return false;
    if (errno == ECONNREFUSED) return errno_error(ErrorKind::connect, "send", errno);
    return errno_error(ErrorKind::io, "send", errno);
  }
}

// ----------------------------------------------------------------------------- RecvBatch

RecvBatch::RecvBatch(std::size_t capacity, std::size_t buffer_size)
    : cap_(capacity), size_(buffer_size), buf_(capacity * buffer_size),
      ctl_(capacity * CMSG_SPACE(sizeof(int))), hdr_(capacity), iov_(capacity),
      from_(capacity), len_(capacity), seg_(capacity), trunc_(capacity) {}

Result<std::size_t> RecvBatch::receive(int fd) {
  for (std::size_t i = 0; i < cap_; ++i) {
    iov_[i] = {buf_.data() + i * size_, size_};
    msghdr& m = hdr_[i].msg_hdr;
    m = {};
    m.msg_name = &from_[i].storage;
    m.msg_namelen = sizeof from_[i].storage;
    m.msg_iov = &iov_[i];
    m.msg_iovlen = 1;
    m.msg_control = ctl_.data() + i * CMSG_SPACE(sizeof(int));
    m.msg_controllen = CMSG_SPACE(sizeof(int));
  }
  int n;
  do {
    n = ::recvmmsg(fd, hdr_.data(), static_cast<unsigned>(cap_), MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::size_t{0};
    if (errno == ECONNREFUSED) return errno_error(ErrorKind::connect, "receive", errno);
    return errno_error(ErrorKind::io, "receive", errno);
  }
  for (int i = 0; i < n; ++i) {
    msghdr& m = hdr_[i].msg_hdr;
    len_[i] = hdr_[i].msg_len;
    from_[i].length = m.msg_namelen;
    trunc_[i] = (m.msg_flags & MSG_TRUNC) != 0;
    seg_[i] = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int v;
        std::memcpy(&v, CMSG_DATA(c), sizeof v);
        if (v > 0) seg_[i] = static_cast<std::size_t>(v);
      }
    }
  }
  return static_cast<std::size_t>(n);
}

// ----------------------------------------------------------------------------- SendBatch

SendBatch::SendBatch(std::size_t slots)
    : slots_(slots), buf_(slots * kSlotSize), meta_(slots),
      hdr_(std::max<std::size_t>(slots, kMaxSegments)), iov_(std::max<std::size_t>(slots, kMaxSegments)),
      ctl_(slots * CMSG_SPACE(sizeof(std::uint16_t))) {}

void SendBatch::commit(std::size_t length, std::size_t segment, const SocketAddress* to) {
  Slot& s = meta_[(first_ + used_) % slots_];
  s.length = length;
  s.segment = segment >= length ? 0 : segment;
  s.has_to = to != nullptr;
  if (to) s.to = *to;
  ++used_;
}

std::size_t SendBatch::send_split(DatagramSocket& s, std::size_t i, bool& again) {
  Slot& slot = meta_[i];
  std::uint8_t* base = buf_.data() + i * kSlotSize;
  std::size_t nseg = (slot.length + slot.segment - 1) / slot.segment;
  for (std::size_t k = 0; k < nseg; ++k) {
    std::size_t off = k * slot.segment;
    iov_[k] = {base + off, std::min(slot.segment, slot.length - off)};
    slot.fill(hdr_[k].msg_hdr, &iov_[k]);
  }
  int n;
  do {
    n = ::sendmmsg(s.fd.get(), hdr_.data(), static_cast<unsigned>(nseg), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      again = true;
      return 0;
    }
    ++dropped_;
    slot.length = 0;  // refused outright: give it up
    return 0;
  }
  if (static_cast<std::size_t>(n) < nseg) {
    // Keep the unsent tail in place: shift it to the slot's start.
    std::size_t off = static_cast<std::size_t>(n) * slot.segment;
    std::memmove(base, base + off, slot.length - off);
    slot.length -= off;
    again = true;
  } else {
    slot.length = 0;
  }
  return static_cast<std::size_t>(n);
}

void SendBatch::Slot::fill(msghdr& m, iovec* iov) const {
  m = {};
  if (has_to) {
    m.msg_name = const_cast<sockaddr_storage*>(&to.storage);
    m.msg_namelen = to.length;
  }
  m.msg_iov = iov;
  m.msg_iovlen = 1;
}

Result<std::size_t> SendBatch::flush(DatagramSocket& s) {
  std::size_t sent = 0;
  while (used_ > 0) {
    if (!s.gso) {
      std::size_t i = first_;
      Slot& slot = meta_[i];
      bool again = false;
      if (slot.segment == 0) slot.segment = slot.length;
      sent += send_split(s, i, again);
      if (slot.length == 0) {
        first_ = (first_ + 1) % slots_;
        --used_;
      }
      if (again) break;
      continue;
    }
    std::size_t n = used_;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = (first_ + k) % slots_;
      Slot& slot = meta_[i];
      iov_[k] = {buf_.data() + i * kSlotSize, slot.length};
      msghdr& m = hdr_[k].msg_hdr;
      slot.fill(m, &iov_[k]);
      if (slot.segment) {
        std::uint8_t* c = ctl_.data() + k * CMSG_SPACE(sizeof(std::uint16_t));
        m.msg_control = c;
        m.msg_controllen = CMSG_SPACE(sizeof(std::uint16_t));
        cmsghdr* cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
        std::uint16_t seg = static_cast<std::uint16_t>(slot.segment);
        std::memcpy(CMSG_DATA(cm), &seg, sizeof seg);
      }
    }
    int r;
    do {
      r = ::sendmmsg(s.fd.get(), hdr_.data(), static_cast<unsigned>(n), 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
      Slot& slot = meta_[first_];
      if ((errno == EIO || errno == EINVAL) && slot.segment) {
        s.gso = false;  // the device cannot segment: split from now on
        continue;
      }
      ++dropped_;  // the first message was refused; skip it and go on
      first_ = (first_ + 1) % slots_;
      --used_;
      continue;
    }
    for (int k = 0; k < r; ++k) {
      Slot& slot = meta_[first_];
      sent += slot.segment ? (slot.length + slot.segment - 1) / slot.segment : 1;
      first_ = (first_ + 1) % slots_;
      --used_;
    }
    if (static_cast<std::size_t>(r) < n) break;
  }
  return sent;
}

}  // namespace dl
