// Datalink: the embeddable, thread-safe message link with the seed library's shape.
//
// A Datalink owns a Reactor and a Link (link.h) driven by its own background thread; every
// public call may come from any thread. One mutex guards the Link: the I/O thread holds it
// while dispatching (the Reactor releases it only while blocked in poll), API calls take it,
// act on the Link, and wake the reactor so the loop flushes. Blocking calls wait on a
// condition variable fed by the Link's observer callbacks.
//
//   auto server = dl::Datalink::server("127.0.0.1:0", 10000);
//   auto client = dl::Datalink::client("127.0.0.1", server->port(), 10000);
//   client->write("hi", 2);                 // timestamp: now (unix seconds)
//   auto m = server->read(1000);            // {bytes, timestamp} or nullopt
//
// Semantics worth knowing:
//  - Native protocol (default): exactly-once, in-order delivery across reconnects of the same
//    session. write() copies the message into the replay window and returns; it blocks only
//    while the window is full (backpressure). Zero-length messages are carried.
//  - Classic protocol (the seed's wire format): no acks, messages fully written before a drop
//    are gone, zero-length messages cannot be carried (write() accepts and drops them; received
//    empty frames are keepalives). A server with Proto::automatic serves native and classic
//    peers alike, told apart by their first byte; a seed client that sends nothing before it
//    has data is only served by a Proto::classic server (silence adopts nothing).
//  - The seed's reconnect behaviour: a client dials until it connects and redials after a
//    drop; a server waits for (re)connections. reconnect_s < 0 means forever.
//  - read() returns nullopt on timeout, after close(), after a fatal error, and (native) once
//    the peer has ended its direction (its close()) and every message was read.
//  - close() ends our direction (native END frame), waits (bounded by close_timeout_ms) until
//    the peer acknowledged everything we wrote and, if the peer ended too, for the orderly
//    shutdown; then stops the thread and closes the sockets. Unread input is not
//    acknowledged as delivered (a native peer will see it as undelivered).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/error.h"
#include "lib/link/link.h"
#include "lib/net/reactor.h"

namespace dl {

struct DatalinkOptions {
  Proto proto = Proto::native;    // server: automatic detects classic peers too
  int keepalive_ms = 0;           // 0: a third of the shorter receive timeout of both sides; < 0: none
  std::uint32_t max_message = kDefaultMaxMessage;
  bool drop_negative_ts = false;  // classic: drop frames with ts < 0 like the seed
  double reconnect_s = -1;        // < 0: keep trying forever (also for the first connect)
  // Extensions beyond the seed's shape:
  std::size_t window = 8u << 20;  // replay window (native) / send queue (classic), bytes
  int close_timeout_ms = 5000;    // upper bound of close()'s graceful part
  std::string psk_file;           // keys: TLS 1.3 with this pre-shared key file (dl-security(7))
};

class Databridge;

class Datalink {
 public:
  // Listens on all addresses (IPv6 and IPv4); port 0 = any (see port()).
  static std::unique_ptr<Datalink> server(std::uint16_t port, int timeout_ms, DatalinkOptions options = {},
                                          Error* error = nullptr);
  // listen_endpoint: "127.0.0.1:0", "[::1]:9000", "9000", "unix:/path" (endpoint.h grammar).
  static std::unique_ptr<Datalink> server(const std::string& listen_endpoint, int timeout_ms,
                                          DatalinkOptions options = {}, Error* error = nullptr);
  // host: a name, IPv4 or IPv6 literal. The connection is made in the background.
  static std::unique_ptr<Datalink> client(const std::string& host, std::uint16_t port, int timeout_ms,
                                          DatalinkOptions options = {}, Error* error = nullptr);

  ~Datalink();  // close()
  Datalink(const Datalink&) = delete;
  Datalink& operator=(const Datalink&) = delete;

  std::uint16_t port() const { return port_; }  // local port (the listening one for servers)

  bool isReady() const;  // connected (and handshake done) now
  bool is_ready() const { return isReady(); }

  // Blocks while the replay window is full; false after close(), on a fatal link error or for
  // a too-large message (see last_error()). Default timestamp: now, unix seconds.
  bool write(const void* payload, std::size_t size, double timestamp);
  bool write(const void* payload, std::size_t size);
  // Like write() with a bound on the wait: 1 sent, 0 timed out (nothing sent), -1 error.
  // timeout_ms < 0: forever, 0: do not wait.
  int write_for(const void* payload, std::size_t size, double timestamp, int timeout_ms);

  bool hasData() const;
  bool has_data() const { return hasData(); }

  struct Received {
    std::vector<std::uint8_t> bytes;
    double timestamp;
  };
  // Blocks up to timeout_ms (-1: forever); nullopt on timeout, closed, or end of input.
  std::optional<Received> read(int timeout_ms = -1);
  // For bindings: size of the next message (blocking up to timeout_ms), then read_into()
  // copies it into caller memory and pops it. read_into() returns false when there is no
  // message or cap is too small (then *size is the size needed and the message stays).
  std::optional<std::size_t> next_size(int timeout_ms);
  // exact: pop only a message of exactly `cap` bytes (for typed reads, e.g. numpy).
  bool read_into(void* dst, std::size_t cap, std::size_t* size, double* timestamp, bool exact = false);

  // Sends an empty keepalive now; false when not connected.
  bool writeKeepAlive();
  bool write_keep_alive() { return writeKeepAlive(); }

  // Waits until everything written is acknowledged (native) / written to the socket (classic).
  bool flush(int timeout_ms);

  // True once the peer ended its direction (native END; classic: orderly close) and every
  // message before that was read.
  bool peer_finished() const;

  void close();
  std::optional<Error> error() const;       // fatal link error, if any
  std::optional<Error> last_error() const;  // the latest error of any call (or the fatal one)
  LinkStats stats() const;

 private:
  friend class Databridge;
  struct Observer;
  Datalink();
  static std::unique_ptr<Datalink> create(LinkOptions lo, Error* error);
  void run();
  void wake_locked();                  // mu_ held
  void notify_locked();                // mu_ held: waiters and bridges
  bool input_done_locked() const;      // mu_ held: no more messages will come now
  // Pops a leading END frame if there is one (needs an ack): returns whether a message waits.
  bool peek_locked(Message& m) const;  // mu_ held
  // mu_ held via lk: waits (in slices) for a message, up to timeout_ms (-1: forever); false on
  // timeout, close or end of input.
  bool wait_message_locked(std::unique_lock<std::mutex>& lk, int timeout_ms, Message& m);
  bool usable_locked() const { return !closing_ && !stopped_ && !link_->closed(); }
  void close_bridges();

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  Reactor reactor_;
  std::unique_ptr<Observer> observer_;
  std::unique_ptr<Link> link_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  int close_timeout_ms_ = 5000;
  mutable bool wake_pending_ = false;
  bool stop_ = false, closing_ = false, stopped_ = false;
  mutable std::optional<Error> last_error_;
  std::vector<Databridge*> bridges_;  // read under mu_; changed under mu_ and the bridge registry mutex
  std::mutex close_mu_;
};

// Forwards every message both ways between two links until either is closed, on its own
// thread. While a side is down, messages are held (queued in the other link's window, then in
// the source's receive buffer and its TCP window): backpressure, never drops. A message too
// large for the destination's limit is dropped and counted. The links must not be read by
// anyone else meanwhile. Closing either link closes the bridge first.
class Databridge {
 public:
  Databridge(Datalink& left, Datalink& right);
  ~Databridge();
  Databridge(const Databridge&) = delete;
  Databridge& operator=(const Databridge&) = delete;
  void close();
  std::uint64_t forwarded() const;  // messages moved, both directions
  std::uint64_t dropped() const;    // too large for the other side

 private:
  friend class Datalink;
  void run();
  bool pump(Datalink& from, Datalink& to);
  void poke();  // called with a link's mutex held
  void detach();

  Datalink* left_;
  Datalink* right_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = true, stop_ = false;  // pending: look once at start
  std::uint64_t forwarded_ = 0, dropped_ = 0;  // guarded by mu_
  std::thread thread_;
};

}  // namespace dl
