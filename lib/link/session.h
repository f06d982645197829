// Session: the pure state machine of one native session (protocol version 2), with no sockets,
// no clock and no bytes: sequence numbers, cumulative acknowledgements of delivered messages,
// the peer's credit, the replay index (which seq ends at which offset of the sender's ring),
// admission of a newcomer's HELLO, resume and restart detection, and end of stream per direction.
//
// Link feeds it what arrived (a HELLO, an ACK, the seq of a DATA/END frame) and asks it what to
// do (adopt, resume or refuse a connection; how far it may write; what to acknowledge). Every
// decision is a return value, so session_test.cc drives it without a network.
//
// What it is not: I/O, timers, classic framing or message bytes (Link and ByteRing own those).
// Ids are drawn from getrandom (random.h): nobody off the path can guess a session, an
// incarnation or a resume token. What an observer on the path can do is in dl-protocol(7).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "lib/base/error.h"
#include "lib/codec/frame.h"

namespace dl {

struct SessionConfig {
  bool listener = false;
  std::uint32_t max_message = 16u << 20;  // largest payload we accept
  std::uint32_t timeout_ms = 0;           // our receive timeout, announced to the peer
  std::uint64_t window = 4u << 20;        // our credit: frame bytes we take beyond what we delivered
  std::uint64_t incarnation = 0;          // listener: the process incarnation (0: draw one); the
                                          // sessions of one SessionListener share its own
};

class Session {
 public:
  explicit Session(SessionConfig config);

  // ---- identity and handshake
  // The HELLO this side sends now (dialer: on connect; listener: in answer to an admitted one).
  frame::Hello hello() const;
  bool known() const { return known_; }  // a session id is set (dialer: always)
  bool established_once() const { return established_once_; }
  std::uint64_t incarnation() const { return incarnation_; }

  enum class Admit { adopt, resume, refuse };
  struct Verdict {
    Admit action = Admit::refuse;
    Error why;  // refuse: sent to the newcomer as an ERROR frame (retryable unless why.final)
  };
  // Listener: what to do with a newcomer's (decoded, valid) HELLO. `session_over`: the current
  // session completed, so a new one may replace it (keep-open). Pure: changes nothing.
  Verdict admit(const frame::Hello& peer, bool session_over) const;
  // Listener: whether a HELLO that names no session this listener holds may start a new one
  // (it must claim nothing: no incarnation, token or delivered messages). `incarnation` is the
  // listener's. adopt or a final session-lost refusal.
  static Verdict admit_new(const frame::Hello& peer, std::uint64_t incarnation);
  // The HELLO names this session (a listener that adopted none yet names none).
  bool same_id(const frame::Hello& peer) const {
    return known_ && peer.session_hi == session_hi_ && peer.session_lo == session_lo_;
  }
  // Dialer: whether the listener's answer fits this session. Errors: final session-lost when the
  // listener restarted (another incarnation) after data was exchanged; retryable bad-hello for
  // answers that do not match (corruption, a confused peer); final too-large-for-peer when a
  // queued message exceeds the peer's limit.
  Status check_answer(const frame::Hello& peer) const;
  // Applies an admitted (listener) or checked (dialer) peer HELLO: from_seq is where the replay
  // starts (frames below it are held by the peer and are not sent again); release_to is the ring
  // offset that the HELLO's delivered field acknowledged up to, if it acknowledged anything new.
  struct Established {
    std::uint64_t from_seq = 1;
    std::optional<std::uint64_t> release_to;
  };
  Established establish(const frame::Hello& peer);
  // Listener: the dialer spoke after our HELLO, so it holds the new token: the one it presented
  // is retired, and replaying its HELLO no longer works.
  void confirm() { prev_token_valid_ = false; }
  // Listener with keep-open: forget everything and wait for a new session.
  void reset();

  // ---- sending
  std::uint64_t next_seq() const { return next_seq_; }
  // Records a DATA frame (payload bytes) or END (end = true) that ends at ring offset `end`.
  std::uint64_t record(std::uint64_t end, std::uint32_t payload, bool is_end);
  // Classic (no seq): frames written up to `offset` are gone. Returns the offset to release to.
  std::optional<std::uint64_t> release_written(std::uint64_t offset);
  struct Acked {
    std::optional<std::uint64_t> release_to;  // ring offset everything acknowledged ends at
  };
  // An ACK (or a HELLO's delivered field). Errors: retryable bad-ack for a seq never sent.
  Result<Acked> on_ack(std::uint64_t seq, std::optional<std::uint64_t> window = std::nullopt);
  // The ring offset up to which frames may be written now: whole frames within the peer's
  // credit (counted from `tail`, the end of what it acknowledged), and always at least the
  // first unacknowledged frame, so a message larger than the window still goes (alone).
  std::uint64_t credit_end(std::uint64_t tail, std::uint64_t head) const;
  // The end of the frame that contains ring offset `off` (off itself at a frame boundary).
  std::uint64_t frame_end_at(std::uint64_t off, std::uint64_t tail) const;
  // The ring offset the replay for `from_seq` starts at.
  std::uint64_t offset_of(std::uint64_t from_seq, std::uint64_t tail) const;
  std::size_t unacked() const { return tx_.size(); }
  std::uint64_t acked_seq() const { return acked_seq_; }
  std::uint64_t acked_bytes() const { return acked_bytes_; }
  std::uint64_t acked_messages() const { return acked_messages_; }
  bool end_queued() const { return end_seq_ != 0; }
  bool end_acked() const { return end_seq_ != 0 && acked_seq_ >= end_seq_; }
  // Everything recorded, END aside, is acknowledged.
  bool data_acked() const;
  std::uint32_t peer_max_message() const { return peer_max_message_; }
  std::uint32_t peer_timeout_ms() const { return peer_timeout_ms_; }
  std::uint64_t peer_window() const { return peer_window_; }
  // Largest payload queued and not yet acknowledged (to refuse it if the peer's limit is smaller).
  std::uint32_t largest_unacked() const;

  // ---- receiving
  enum class Rx { accept, duplicate, gap };
  // A DATA/END frame's seq: the next one is accepted, older ones are duplicates of what we hold.
  Rx on_frame(std::uint64_t seq);
  std::uint64_t recv_next() const { return recv_next_; }
  void delivered(std::uint64_t seq) { if (seq > delivered_) delivered_ = seq; }
  // The peer's END (seq) reached the application: its direction is over once we ack it.
  void peer_end_delivered(std::uint64_t seq) {
    delivered(seq);
    peer_ended_ = true;
  }
  bool peer_ended() const { return peer_ended_; }
  // Both directions ended: our END acknowledged, the peer's END delivered and acknowledged.
  bool complete() const { return end_acked() && peer_ended_ && all_delivered_acked(); }
  std::uint64_t delivered_seq() const { return delivered_; }
  // An ACK is due: something was delivered since the last one we sent.
  bool ack_due() const { return delivered_ > acked_sent_; }
  void ack_sent() { acked_sent_ = delivered_; }
  bool all_delivered_acked() const { return acked_sent_ >= delivered_; }
  std::uint64_t window() const { return cfg_.window; }

 private:
  struct TxFrame {
    std::uint64_t seq, end;
    std::uint32_t payload;
    bool is_end;
  };
  void new_ids();

  SessionConfig cfg_;
  bool known_ = false, established_once_ = false;
  std::uint64_t session_hi_ = 0, session_lo_ = 0;
  std::uint64_t incarnation_ = 0;  // listener: ours; dialer: the listener's, once known
  std::uint64_t token_ = 0;        // listener: the valid token; dialer: the last one received
  std::uint64_t prev_token_ = 0;   // listener: the one presented, until the dialer confirms
  bool prev_token_valid_ = false;

  std::deque<TxFrame> tx_;
  std::uint64_t next_seq_ = 1, acked_seq_ = 0, end_seq_ = 0;
  std::uint64_t acked_bytes_ = 0, acked_messages_ = 0;
  std::uint64_t peer_window_ = 0;
  std::uint32_t peer_max_message_ = 0, peer_timeout_ms_ = 0;

  std::uint64_t recv_next_ = 1, delivered_ = 0, acked_sent_ = 0;
  bool peer_ended_ = false;
};

}  // namespace dl
