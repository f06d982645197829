// connection: one PyMoDAQ conversation over a non-blocking TCP socket driven by the reactor:
// bytes in are decoded into whole messages (pymodaq_codec), messages out are encoded whole
// into an output buffer and written as the socket takes them.
//
// Output is never stopped half-way through a message (PyMoDAQ's reader spins forever on a peer
// that does): close_after_flush() writes out everything queued first. Producers keep memory
// flat by asking congested() before queueing more and waiting for on_drained (backpressure,
// not an unbounded queue). Input is bounded by Limits: a message announcing more is an error.
//
// It is not: dialing or accepting (dl::Connector, dl::Acceptor), nor who says what when (roles).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/codec/pymodaq_codec.h"
#include "lib/net/reactor.h"
#include "lib/net/stream.h"
#include "lib/net/tls_socket.h"

namespace dl::pymodaq {

// A byte vector whose resize() leaves new bytes uninitialised: socket reads land straight in it.
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) {}
  template <class U>
  void construct(U* p) noexcept { ::new (static_cast<void*>(p)) U; }
  template <class U, class... A>
  void construct(U* p, A&&... a) { ::new (static_cast<void*>(p)) U(std::forward<A>(a)...); }
};
using InBuffer = std::vector<std::uint8_t, UninitAllocator<std::uint8_t>>;

class Connection {
 public:
  struct Callbacks {
    // A whole message; `offset` is its position in this connection's input stream.
    std::function<void(Message&& m, std::uint64_t offset, std::size_t size)> on_message;
    // The connection is dead (peer closed, socket error, bad input); called once. Peer closes
    // are ErrorKind::disconnected, bad input protocol / too_large naming the byte offset.
    std::function<void(const Error& e)> on_closed;
    // Output fell below the low-water mark after being congested.
    std::function<void()> on_drained;
  };

  // Takes `fd` (connected, non-blocking). `peer` names it in errors.
  Connection(Reactor& r, Fd fd, std::string peer, Dialect d, Limits limits, Callbacks cb);
  // The same over a socket that may carry TLS (keys: dl-security(7)); TLS failures are
  // reported with their own errors (auth, protocol, disconnected).
  Connection(Reactor& r, std::unique_ptr<TlsSocket> socket, std::string peer, Dialect d, Limits limits, Callbacks cb);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues one whole message; it is written before the reactor next waits (so a burst of small
  // commands leaves in one write). Never blocks; write errors surface through on_closed.
  void send(const Message& m);
  // Queues bytes that already hold whole messages (the same encoding, built by the caller).
  void send_raw(const std::vector<std::uint8_t>& bytes);
  bool congested() const { return pending() >= kHighWater; }
  std::size_t pending() const { return out_pending_; }
  // Stops (or resumes) reading: input waits in the kernel, which pushes back on the peer.
  void pause_reading(bool paused);
  // Stops reading, writes everything queued, then closes the socket and calls `done` (also on a
  // write error). Messages still arriving are dropped.
  void close_after_flush(std::function<void()> done);
  bool open() const { return stream_ != nullptr; }
  // For plain connections: how a peer with keys shows. A dialer whose listener opens with a TLS
  // alert fails with listener_needs_keys(); a listener whose client opens with a TLS handshake
  // answers in plain words (which the client's TLS reports as "does not speak TLS") and fails
  // with an auth error. Call before the first bytes arrive.
  void notice_tls_peers(bool dialer) { notice_tls_ = dialer ? 1 : 2; }
  // Input limits from the next message on (a server keeps a stranger's small until it
  // announced a client type).
  void set_limits(const Limits& limits) { limits_ = limits; }
  const std::string& peer() const { return peer_; }
  std::uint64_t bytes_in() const { return in_offset_; }
  std::uint64_t bytes_out() const { return out_total_; }

  static constexpr std::size_t kHighWater = 8u << 20;

 private:
  Connection(Reactor& r, std::unique_ptr<Stream> stream, std::string peer, Dialect d, Limits limits, Callbacks cb);
  bool tls_peer_noticed();
  void on_readable();
  void read_some();
  void decode_buffered();
  void write_some();
  void update_events();
  void fail(Error e);
  void finish_close();

  Reactor& r_;
  Reactor::Id flush_hook_ = 0;
  std::unique_ptr<Stream> stream_;
  std::string peer_;
  Dialect dialect_;
  Limits limits_;
  Callbacks cb_;
  InBuffer in_;
  std::size_t in_head_ = 0;       // first undecoded byte in in_
  std::size_t in_needed_ = 1;     // decode again once this many bytes are buffered
  std::uint64_t in_offset_ = 0;   // stream offset of in_[in_head_]
  // Whole encoded messages, oldest first; written with writev, never moved once queued.
  std::deque<std::vector<std::uint8_t>> out_;
  std::size_t out_head_ = 0;      // bytes of out_.front() already written
  std::size_t out_pending_ = 0;
  std::uint64_t out_total_ = 0;
  bool paused_ = false, was_congested_ = false, closing_ = false, dead_ = false;
  int notice_tls_ = 0;  // 1: as a dialer, 2: as a listener (notice_tls_peers)
  std::function<void()> flushed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl::pymodaq
