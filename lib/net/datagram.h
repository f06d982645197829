// datagram: UDP sockets for bulk datagram transfer (DTP): set-up with large kernel buffers,
// and batched receive and send (recvmmsg/sendmmsg) with UDP segmentation offload where the
// kernel has it (UDP_SEGMENT to send one buffer as many datagrams, UDP_GRO to receive many
// datagrams as one buffer), falling back to one datagram per message where it does not.
// All buffers are allocated once, up front: nothing here allocates per datagram.
// Sockets are non-blocking and close-on-exec. This layer knows nothing of DTP's format.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/endpoint.h"

namespace dl {

struct DatagramSocket {
  Fd fd;
  SocketAddress local;
  bool gso = false;  // UDP_SEGMENT accepted: SendBatch may hand the kernel multi-datagram buffers
  bool gro = false;  // UDP_GRO on: RecvBatch may get several datagrams in one buffer
};

// Binds a UDP socket for a server (resolving blocks). IPv6 wildcards take IPv4 too.
// `buffer_bytes` sizes SO_RCVBUF/SO_SNDBUF (forced past the sysctl limit when we may).
// Errors: resolve, connect ("bind ...: Address already in use").
Result<DatagramSocket> bind_datagram(const Endpoint& endpoint, std::size_t buffer_bytes);

// A UDP socket connect()ed to `peer` (so strangers' datagrams are filtered by the kernel and
// an ICMP "port unreachable" surfaces as ECONNREFUSED on the next call). Errors: connect.
Result<DatagramSocket> dial_datagram(const SocketAddress& peer, std::size_t buffer_bytes);

// Turns on UDP_GRO for `s` when `want` and the kernel has it; returns whether it is on.
bool enable_gro(DatagramSocket& s, bool want);

// Sends one small datagram (control traffic). `to` null: the connected peer. Returns false on
// EAGAIN (dropped, as the network could have); errors: io, or connect for ECONNREFUSED.
Result<bool> send_datagram(int fd, std::span<const std::uint8_t> bytes, const SocketAddress* to);

// Receives up to `capacity` messages per call with one recvmmsg(2). Each message is a datagram
// or, with GRO, several datagrams of segment_size() bytes each (the last may be shorter).
class RecvBatch {
 public:
  RecvBatch(std::size_t capacity, std::size_t buffer_size);
  // Non-blocking. Returns the number of messages (0: nothing pending). Errors: io, connect
  // (ECONNREFUSED on a connected socket whose peer port is closed).
  Result<std::size_t> receive(int fd);
  std::span<std::uint8_t> message(std::size_t i) { return {buf_.data() + i * size_, len_[i]}; }
  // Datagram size inside message i: the GRO segment size, or the whole message.
  std::size_t segment_size(std::size_t i) const { return seg_[i] ? seg_[i] : len_[i]; }
  bool truncated(std::size_t i) const { return trunc_[i]; }
  const SocketAddress& from(std::size_t i) const { return from_[i]; }
  std::size_t capacity() const { return cap_; }

 private:
  std::size_t cap_, size_;
  std::vector<std::uint8_t> buf_;
  std::vector<std::uint8_t> ctl_;
  std::vector<struct mmsghdr> hdr_;
  std::vector<struct iovec> iov_;
  std::vector<SocketAddress> from_;
  std::vector<std::size_t> len_, seg_;
  std::vector<bool> trunc_;
};

// Collects outgoing messages in preallocated slots and sends them with sendmmsg(2). A slot
// holds one datagram, or (segment > 0) a run of datagrams of `segment` bytes each, the last
// possibly shorter, sent with UDP_SEGMENT when the socket has it and split otherwise.
class SendBatch {
 public:
  static constexpr std::size_t kSlotSize = 65536;
  static constexpr std::size_t kMaxSegments = 64;
  explicit SendBatch(std::size_t slots);
  std::size_t free_slots() const { return slots_ - used_; }
  bool empty() const { return used_ == 0; }
  // The buffer of the next free slot (kSlotSize bytes); then commit() it.
  std::uint8_t* next_slot() { return buf_.data() + (first_ + used_) % slots_ * kSlotSize; }
  void commit(std::size_t length, std::size_t segment, const SocketAddress* to);
  // Sends what it can. Returns the number of datagrams sent; unsent slots stay queued
  // (EAGAIN: wait for POLLOUT). A slot the kernel refuses outright (EMSGSIZE, unreachable
  // peer) is dropped and counted in dropped(). Turns GSO off for good on EIO/EINVAL.
  Result<std::size_t> flush(DatagramSocket& s);
  std::uint64_t dropped() const { return dropped_; }

 private:
  struct Slot {
    std::size_t length = 0, segment = 0;
    SocketAddress to;
    bool has_to = false;
    // A one-buffer message header for `iov`, addressed to `to` when the slot has one.
    void fill(msghdr& m, iovec* iov) const;
  };
  std::size_t send_split(DatagramSocket& s, std::size_t i, bool& again);
  std::size_t slots_, first_ = 0, used_ = 0;
  std::vector<std::uint8_t> buf_;
  std::vector<Slot> meta_;
  std::vector<struct mmsghdr> hdr_;
  std::vector<struct iovec> iov_;
  std::vector<std::uint8_t> ctl_;
  std::uint64_t dropped_ = 0;
};

}  // namespace dl
