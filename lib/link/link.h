// Link: one self-healing message link to one peer, driven by a Reactor.
//
// A link dials or listens, reconnects with backoff when the connection breaks, keeps the peer's
// receive timeout fed with keepalives, and (native protocol) gives exactly-once, in-order
// delivery across reconnects of the same session: sent messages stay in a bounded replay ring
// until the peer acknowledges them, and are resent from the peer's last acknowledged point
// after a reconnect. When the ring is full, reserve()/try_send() return nothing: that is the
// backpressure callers pass on to their input. In classic mode (the seed's wire format, see
// classic_codec.h) there are no acks: messages fully written before a drop are gone.
//
// Link is the front that owns connections, timers and the byte rings; every protocol decision
// (seq, acks, credit, admission, resume) is Session's (session.h). Dialing (backoff, a fresh
// name lookup every round, the last round at the deadline, then with keys the TLS handshake) is
// the net layer's SecureConnector, taking connections (--allow, TLS handshakes, protocol
// detection, HELLO decoding, handshake deadlines) a SessionListener (listener.h), which hands
// each admitted connection to adopt(): either way the Link only adopts ready connections. The
// Link decides only whether it fits its session (Session::admit). A Link with `listen` builds a
// one-session listener of its own; several sessions on one port are several Links started with
// start(listener) on a multi-session listener. Native flow control is by credit: the peer never
// sends more than we announced we can hold, so a link always reads its socket and
// acknowledgements always get through, whatever the application's reading pattern.
//
// What it is not: it owns no threads (see datalink.h for the threaded API) and never prints;
// it reports through LinkObserver. All calls are non-blocking and must come from the reactor's
// thread. Message views from peek() stay valid until consume().
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "lib/base/backoff.h"
#include "lib/net/acceptor.h"
#include "lib/net/allow_list.h"
#include "lib/net/connector.h"
#include "lib/net/endpoint.h"
#include "lib/net/handshake_trust.h"
#include "lib/codec/frame.h"
#include "lib/base/error.h"
#include "lib/net/net.h"
#include "lib/net/reactor.h"
#include "lib/net/secure_connector.h"
#include "lib/link/detect.h"
#include "lib/link/listener.h"
#include "lib/net/tls.h"
#include "lib/link/ring_buffer.h"
#include "lib/link/session.h"
#include "lib/link/stats.h"

namespace dl {

// "native", "classic", "auto"; errors: usage.
Result<Proto> parse_proto(std::string_view text);

inline constexpr std::uint32_t kDefaultMaxMessage = 16u << 20;

struct LinkOptions {
  bool listen = false;
  Endpoint endpoint;
  Proto proto = Proto::native;           // automatic: listeners detect classic peers
  int timeout_ms = 10000;                // receive timeout; <= 0 disables
  int keepalive_ms = 0;                  // 0: a third of the shorter of both timeouts; < 0: never
  double wait_s = 0;                     // dial: retry the first connect this long; listen: wait
                                         // this long for the first peer (< 0 or inf: forever)
  double reconnect_s = 60;               // after a drop, keep trying this long (< 0 or inf: forever)
  std::size_t window = 8u << 20;         // replay ring; grows to fit one max-size message
  std::uint32_t max_message = kDefaultMaxMessage;
  bool drop_negative_ts = false;         // classic: drop frames with ts < 0 like the seed
  bool keep_open = false;                // listen: serve a new session after one completes
  bool receive_only = false;             // this side sends nothing: end our direction at once
  bool await_peer_end = true;            // classic: completion waits for the peer's end
  bool close_ends = false;               // classic: an orderly close at a frame boundary is the
                                         // end of the stream (default: a drop, like any other)
  AllowList allow;                       // listen: peers outside it are reset before a byte is read
  int handshake_ms = 5000;               // a newcomer must complete its handshake within this
  int linger_ms = 2000;                  // after completion, wait this long for the peer's close
  BackoffPolicy backoff;
  TlsFlags tls;                          // keys: TLS 1.3 below the protocol (none: plain TCP)
  std::uint64_t incarnation = 0;         // listen: the process incarnation (0: draw one; a
                                         // multi-session listener's links share its own)
};

struct Message {
  std::span<const std::uint8_t> payload;
  double timestamp = 0;
  std::uint64_t seq = 0;  // 0 in classic mode
  std::optional<std::uint64_t> checksum;  // native without keys: the frame's checksum, verified
};

enum class LinkEvent {
  listening,      // bound; local_address() is final
  connected,      // a connection is established (handshake done); detail says native/classic
  resumed,        // ... and it resumed an existing session
  disconnected,   // the connection broke; error() tells why; a retry follows unless failed
  retrying,       // next connect attempt scheduled (detail: delay)
  rejected,       // a connection was refused (garbage, busy session); the link goes on
  abandoned,      // keep-open: a session ended badly (why); the link waits for the next one
  warning,        // something worth saying at -v (negative timestamps, resync after garbage)
  completed,      // both directions ended and were acknowledged
  closed,         // the link is done (after completion and linger, or after failure)
};

struct LinkObserver {
  virtual ~LinkObserver() = default;
  virtual void on_readable() {}  // peek() may now return a message, or peer_finished() changed
  virtual void on_writable() {}  // reserve()/try_send() may now succeed, or finished() changed
  virtual void on_event(LinkEvent, const std::string& /*detail*/, const Error* /*why*/) {}
};

class Link {
 public:
  Link(Reactor& reactor, LinkOptions options, LinkObserver* observer);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Listen: binds now (errors: resolve, connect). Dial: resolves now (errors: resolve) and
  // starts connecting in the background.
  Status start();
  // Listen side, served by `listener` (not owned, multi-session: see listener.h), usually from its
  // NewSession callback: sets the link up and attaches it; binds nothing. Errors: usage (a
  // dialing link), io (the rings could not be mapped).
  Status start(SessionListener& listener);
  const SocketAddress& local_address() const { return local_; }
  // Listen side: the listener hands over an admitted connection. The link takes it (n is left
  // empty: adopts a new session, resumes its own, or replaces a classic peer) or refuses it
  // (n untouched; the caller closes it, telling a native peer the error). A live session is
  // never touched by a newcomer that does not present its current resume token. Observer
  // callbacks (connected, resumed) run inside.
  Status adopt(Newcomer& n);

  // --- sending ---
  // Space for one message of up to `max_payload` bytes, written in place; empty when the ring
  // is full (wait for on_writable). commit() sends the first n bytes of it.
  std::span<std::uint8_t> reserve(std::size_t max_payload);
  void commit(std::size_t n, double timestamp);
  // Copies one message in. false when there is no room now; a message larger than
  // max_message is refused with too_large in *error.
  bool try_send(std::span<const std::uint8_t> payload, double timestamp, Error* error = nullptr);
  // Sends `m`, a message peeked from another link, without copying its payload: only the framing
  // goes into our ring, and the payload is sent from where it lies. The caller keeps m.payload
  // valid and unchanged until messages_settled() covers this message (it is replayed from there
  // after a reconnect): a relay consumes it upstream only then, and keeps the other link alive
  // as long as this one may write. When our frame takes the seq m had and m's checksum was
  // verified, the header is the same and so is the checksum, which is then not computed again.
  // Results as try_send.
  bool try_forward(const Message& m, Error* error = nullptr);
  // Ends this direction after what is queued. finished(): the peer acknowledged all of it
  // (classic: all of it was written).
  void finish();
  bool finished() const;
  // The largest payload that may be sent: our max_message, lowered to the limit a native peer
  // announced in its HELLO. nullopt until that is known (a native peer not reached yet, or a
  // listener that has not detected its peer's protocol): raw senders wait rather than cut
  // messages that the peer would refuse.
  std::optional<std::uint32_t> known_send_limit() const;
  // Everything committed so far was acknowledged by the peer (classic: written), END aside.
  bool acknowledged() const;
  std::size_t queued_bytes() const { return tx_.size(); }
  // Messages committed so far, and how many of them are settled: acknowledged as delivered by
  // a native peer, or fully written to the socket in classic mode (which has no acks). A relay
  // releases its upstream copy of a message only once it is settled downstream.
  std::uint64_t messages_committed() const {
    return session_.next_seq() - 1 - (session_.end_queued() ? 1 : 0);
  }
  std::uint64_t messages_settled() const { return session_.acked_messages(); }

  // --- receiving ---
  // The index-th message waiting (0 = oldest); false when there are fewer. Views stay valid
  // until that message is consumed.
  bool peek(Message& out, std::size_t index = 0);
  // Releases the `count` oldest messages: they count as delivered and will be acknowledged.
  void consume(std::size_t count = 1);
  std::size_t available() const;  // messages ready for peek()
  bool peer_finished() const { return peer_finished_; }

  // --- state ---
  bool ready() const;             // a connection is established now
  bool completed() const { return completed_; }
  bool closed() const { return closed_; }
  const std::optional<Error>& failure() const { return failure_; }
  Proto wire_proto() const { return wire_proto_; }
  const LinkStats& stats() const { return stats_; }
  std::string peer() const;
  // Close now; the link reports `closed` and does nothing more.
  void close();
  // Ends the session on purpose: tells a native peer why (so it stops at once with exit
  // "disconnected" instead of waiting to reconnect to a session that is gone), then close().
  // The notice goes after the frame being written and after an ACK of what was delivered; it
  // blocks up to `flush_ms` for it to reach the socket (never longer, whatever the peer does).
  void abandon(std::string_view reason, int flush_ms = 1000);
  // Drops the current connection as if the network had failed (for fault drills and tests):
  // the link reconnects and resumes like after any other drop.
  void abort_connection();
  // Sends an empty keepalive now if connected (the seed's writeKeepAlive).
  void send_keepalive();

  const Session& session() const { return session_; }

 private:
  struct Conn;
  struct RxMessage {
    std::uint64_t frame_start, payload, frame_end;
    std::uint32_t size;
    double timestamp;
    std::uint64_t seq;
    bool end;
  };

  // connection management
  std::unique_ptr<SecureConnector> make_connector(Clock::time_point deadline);
  void on_dialed(Result<SecureConnected> r);
  void on_handshake_refused(Error e);
  void connected(std::unique_ptr<Conn> c);  // dial: the socket (and TLS) is up
  void on_conn_io(Conn* c, short revents);
  Status start_rings();
  friend class SessionListener;
  void listener_gone(SessionListener& l);  // its destructor: no more newcomers from it
  struct ListenerEvents;
  // Makes `c` the established connection (null: active_ finished its handshake).
  void promote(std::unique_ptr<Conn> c, Proto proto, const frame::Hello* hello);
  bool attempt_in_progress() const;
  bool native_session_in_progress() const;
  bool proto_known() const;
  std::uint32_t send_limit() const;
  int keepalive_interval() const;
  void drain_early(Conn* c);
  void drop_conn(Conn* c, const Error& why, bool report);
  // `orderly`: the peer closed its side (EOF) or our linger after completion ran out; anything
  // else (reset, timeout, abort) is a cut.
  void connection_lost(const Error& why, bool orderly = false);
  void session_over(const Error& why);
  void give_up(const Error* dial_error = nullptr);
  void fail(const Error& e);
  void reschedule();
  void on_timer();
  void update_interest();
  void notify_writable();
  void take_encoded(std::size_t total, std::size_t payload);
  std::string peer_name() const;

  // TLS (with keys): the byte I/O that goes through TLS when a connection has it (the
  // handshake is done below, before a connection reaches us). conn_recv/conn_send behave like
  // recv/sendmsg; a TLS failure is -1 with errno EPROTO and the reason in io_failure().
  void drain_tls_input();
  ssize_t conn_recv(Conn* c, void* buf, std::size_t n);
  ssize_t conn_send(Conn* c, const iovec* iov, int n_iov);
  bool conn_flush_tls(Conn* c);
  void conn_shutdown(Conn* c);
  Error io_failure(Conn* c, const std::string& what, int err);
  // With keys, TLS authenticates every byte: DATA frames go without their checksum.
  frame::Integrity integrity() const { return opt_.tls.any() ? frame::Integrity::tls : frame::Integrity::checksum; }

  // data path
  void flush();
  bool write_some(Conn* c);
  std::uint64_t write_limit(const Conn* c) const;
  void read_some(Conn* c);
  void parse_native(Conn* c);
  void parse_classic(Conn* c);
  bool apply_ack(Result<Session::Acked> a, const std::string& ctx);
  void release_written_classic();
  void queue_end_if_room();
  bool has_output(const Conn* c) const;
  bool make_rx_room(std::size_t needed);
  void queue_hello();
  void queue_ack();
  void queue_control(frame::Type type, std::uint64_t seq, std::span<const std::uint8_t> payload);
  void send_error_and_close(Conn* c, const Error& e);
  Status ensure_tx_room(std::size_t frame_bytes);
  void check_completion();
  void take_peer_end();
  std::size_t frame_overhead() const;
  void reset_session();
  void update_ack_stats();

  Reactor& reactor_;
  LinkOptions opt_;
  LinkObserver* obs_;
  Session session_;
  Timer timer_;
  Reactor::Id flush_hook_ = 0;
  SocketAddress local_;
  std::unique_ptr<ListenerEvents> listener_events_;  // listen, own listener: its reports
  std::unique_ptr<SessionListener> own_listener_;    // listen, one session: ours
  SessionListener* listener_ = nullptr;              // listen: who hands us connections
  std::unique_ptr<SecureConnector> connector_;  // dial: one per wait (first connect, each drop)
  std::shared_ptr<TlsConfig> tls_;                   // dial: loaded by start() when keys are given
  HandshakeTrust trust_;  // dial: whether a refused TLS handshake is believed
  std::unique_ptr<Conn> active_;
  std::optional<Clock::time_point> give_up_at_;  // listen: the wait for a peer ends here
  Clock::time_point waiting_since_{};  // when the current wait for a peer began
  int protocol_failure_streak_ = 0;
  std::optional<Error> last_error_;
  std::optional<Error> failure_;
  std::string last_peer_;
  Proto wire_proto_ = Proto::native;
  bool started_ = false, closed_ = false, ever_connected_ = false, stopping_ = false;

  // tx: encoded frames in a ring; the session indexes every frame not yet acknowledged
  ByteRing tx_;
  // Payloads sent by try_forward: ring offsets [start, end) are not written in the ring; their
  // bytes are at `data`, outside it. Ordered, pruned as the ring releases.
  struct Borrowed {
    std::uint64_t start, end;
    const std::uint8_t* data;
  };
  std::deque<Borrowed> borrowed_;
  void release_tx(std::uint64_t to);
  // Adds iovecs for ring offsets [from, to) (borrowed payloads from where they lie) to iov[n..max);
  // returns the bytes covered, which is less than to - from only when iov ran out.
  std::size_t tx_iov(iovec* iov, int& n, int max, std::uint64_t from, std::uint64_t to) const;
  bool end_requested_ = false;
  std::uint64_t max_sent_off_ = 0;  // furthest tx offset ever written (to count resent bytes)
  bool writable_pending_ = false;

  // rx
  ByteRing rx_;
  std::deque<RxMessage> rx_queue_;
  std::uint64_t parse_off_ = 0;
  bool peer_finished_ = false;
  bool rx_blocked_ = false;  // classic: the next frame needs room that waiting messages hold
  bool completed_ = false;
  std::uint64_t classic_frames_ = 0;  // valid classic frames on the current session
  std::optional<Clock::time_point> linger_until_;
  bool classic_garbage_run_ = false;

  LinkStats stats_;
};

}  // namespace dl
