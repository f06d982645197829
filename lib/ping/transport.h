// transport: the few socket pieces dlping's client and responder share: where to dial or
// listen (TCP, unix, or a "udp:" endpoint), UDP sockets, busy-poll and CPU placement, and a
// byte buffer that reads and writes a non-blocking socket without copying more than needed.
// Internal to lib/ping. Blocking: only resolving (getaddrinfo).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/endpoint.h"
#include "lib/net/stream.h"

namespace dl::ping {

struct Target {
  Endpoint endpoint;   // the family's grammar (dl-endpoint(7)), udp: included
  bool udp = false;    // endpoint.kind == udp
  std::string text;    // canonical, "udp:127.0.0.1:9000" for datagrams
  std::string transport() const {
    return udp ? "udp" : endpoint.kind == Endpoint::Kind::unix_socket ? "unix" : "tcp";
  }
};

// Errors: usage (bad endpoint text).
Result<Target> parse_target(const std::string& text, bool listen);

// A UDP socket connected to the first address of `t` that works (client). Errors: resolve, connect.
Result<Fd> udp_connect(const Target& t, SocketAddress* peer);
// A UDP socket bound to `t` (responder). Errors: resolve, connect ("bind ...").
Result<Fd> udp_bind(const Target& t, SocketAddress* local);

// Asks the kernel to busy-poll the socket's receive queue (SO_BUSY_POLL, 50 us); best effort.
void socket_busy_poll(int fd);
// Pins the calling thread to one CPU. Errors: usage (no such CPU), io.
Status pin_to_cpu(int cpu);

// A growable receive buffer: read() appends, consume() drops what was handled.
class InBuffer {
 public:
  explicit InBuffer(std::size_t initial = 64 * 1024) : buf_(initial) {}
  std::uint8_t* data() { return buf_.data() + start_; }
  std::size_t size() const { return end_ - start_; }
  void consume(std::size_t n);
  // Makes room for at least `n` bytes in total from data() on (moving what is there to the front).
  void reserve_total(std::size_t n);
  // One recv(2): non-blocking unless `wait` (then the socket's own mode and SO_RCVTIMEO
  // decide). Returns bytes read, 0 at EOF, -1 with errno (EAGAIN included).
  long read_from(int fd, bool datagram, bool wait = false);
  // The same through a socket layer (TLS, or plain): never blocks.
  long read_from(StreamLayer& s);

 private:
  void make_room(bool datagram);
  std::vector<std::uint8_t> buf_;
  std::size_t start_ = 0, end_ = 0;
};

// Output not yet accepted by a stream socket.
class OutBuffer {
 public:
  void append(const void* p, std::size_t n);
  bool empty() const { return off_ == buf_.size(); }
  std::size_t size() const { return buf_.size() - off_; }
  // Writes as much as the socket takes, after what the layer (TLS) still holds. Errors:
  // disconnected (EPIPE, ECONNRESET), io, and the layer's own (auth, protocol).
  Status flush(StreamLayer& s);
  // Nothing left here nor inside the layer.
  bool drained(const StreamLayer& s) const { return empty() && !s.has_pending_output(); }

 private:
  std::vector<std::uint8_t> buf_;
  std::size_t off_ = 0;
};

}  // namespace dl::ping
