#include "lib/link/session.h"

#include <algorithm>

#include "lib/base/random.h"

namespace dl {

namespace {
std::uint64_t nonzero_random() {
  std::uint64_t v;
  do v = secure_random_u64();
  while (v == 0);  // 0 means "none" on the wire
  return v;
}
}  // namespace

Session::Session(SessionConfig config) : cfg_(config) {
  if (cfg_.listener) incarnation_ = cfg_.incarnation ? cfg_.incarnation : nonzero_random();
  new_ids();
}

void Session::new_ids() {
  if (cfg_.listener) {
    known_ = false;  // a listener adopts the id its first dialer names
    session_hi_ = session_lo_ = 0;
  } else {
    known_ = true;
    session_hi_ = nonzero_random();
    session_lo_ = secure_random_u64();
  }
  token_ = 0;
  prev_token_valid_ = false;
}

void Session::reset() {
  std::uint64_t inc = incarnation_;
  SessionConfig c = cfg_;
  *this = Session(c);
  if (c.listener) incarnation_ = inc;  // the same process: the same incarnation
}

frame::Hello Session::hello() const {
  frame::Hello h;
  h.session_hi = session_hi_;
  h.session_lo = session_lo_;
  h.incarnation = incarnation_;
  h.token = token_;
  h.recv_next = recv_next_;
  h.delivered = delivered_;
  h.max_message = cfg_.max_message;
  h.timeout_ms = cfg_.timeout_ms;
  h.window = cfg_.window;
  return h;
}

Session::Verdict Session::admit_new(const frame::Hello& p, std::uint64_t incarnation) {
  Verdict v;
  if (p.incarnation != 0 && p.incarnation != incarnation) {
    // It resumes a session of another incarnation of this listener: we restarted and hold
    // nothing of it. Replaying into us would duplicate what our predecessor delivered.
    v.why = protocol_error("session-lost", "", "the listener restarted and holds nothing of this session",
                           /*retryable=*/false);
    return v;
  }
  if (p.incarnation != 0 || p.token != 0 || p.delivered != 0 || p.recv_next != 1) {
    v.why = protocol_error("session-lost", "", "the listener does not know this session", false);
    return v;
  }
  v.action = Admit::adopt;
  return v;
}

Session::Verdict Session::admit(const frame::Hello& p, bool session_over) const {
  Verdict v;
  bool same = same_id(p);
  if (!known_ || (session_over && !same)) return admit_new(p, incarnation_);
  if (!same) {
    v.why = protocol_error("session-busy", "", "another session is in progress there");
    return v;  // retryable: the dialer may get in once that session ends (keep-open)
  }
  // A resume of our session. Everything it claims must fit, or it is a replay or a forgery;
  // either way only the newcomer is refused.
  bool token_ok = p.token == token_ || (prev_token_valid_ && p.token == prev_token_);
  // A dialer whose first answer from us was lost (corrupted, cut) still says incarnation 0 and
  // token 0; that is fine until it confirms, like any other not-yet-confirmed token.
  bool incarnation_ok = p.incarnation == incarnation_ ||
                        (p.incarnation == 0 && p.token == 0 && prev_token_valid_ && prev_token_ == 0);
  if (!incarnation_ok || !token_ok) {
    v.why = protocol_error("stale-hello", "", "a handshake for this session that is out of date (replayed?)", false);
    return v;
  }
  if (p.recv_next > next_seq_ || p.delivered < acked_seq_) {
    v.why = protocol_error("stale-hello", "", "a handshake whose sequence numbers do not fit this session", false);
    return v;
  }
  v.action = Admit::resume;
  return v;
}

Status Session::check_answer(const frame::Hello& p) const {
  if (p.session_hi != session_hi_ || p.session_lo != session_lo_) {
    return protocol_error("bad-hello", "", "the listener answered with another session id");
  }
  if (incarnation_ != 0 && p.incarnation != incarnation_) {
    return protocol_error("session-lost", "", "the listener restarted and lost this session", false);
  }
  if (p.recv_next < acked_seq_ + 1 || p.delivered < acked_seq_) {
    return protocol_error("session-lost", "", "the peer lost messages it had acknowledged", false);
  }
  if (p.recv_next > next_seq_) {
    return protocol_error("bad-hello", "", "the peer expects seq " + std::to_string(p.recv_next) +
                                               " but only " + std::to_string(next_seq_ - 1) + " were sent");
  }
  if (largest_unacked() > p.max_message) {
    Error e = make_error(ErrorKind::too_large, "message",
                         "message of " + std::to_string(largest_unacked()) + " bytes exceeds the peer's limit of " +
                             std::to_string(p.max_message) + " bytes (its --max-message)");
    e.id = "too-large-for-peer";
    e.final = true;
    return e;
  }
  return ok_status();
}

Session::Established Session::establish(const frame::Hello& p) {
  if (cfg_.listener) {
    if (!known_) {
      session_hi_ = p.session_hi;
      session_lo_ = p.session_lo;
      known_ = true;
    }
    if (prev_token_valid_ && p.token == prev_token_ && token_ != 0) {
      // The unconfirmed token again: our last answer was lost, or this is a replay. The token
      // we gave in that answer stays good, so a replayed HELLO can never lock out a dialer
      // that holds it; the replayer gets it too, as anyone who saw that answer did.
    } else {
      prev_token_ = p.token;
      prev_token_valid_ = true;
      do token_ = nonzero_random();
      while (token_ == prev_token_);
    }
  } else {
    incarnation_ = p.incarnation;
    token_ = p.token;
  }
  peer_window_ = p.window;
  peer_max_message_ = p.max_message;
  peer_timeout_ms_ = p.timeout_ms;
  established_once_ = true;
  Established e;
  if (auto a = on_ack(std::min(p.delivered, next_seq_ - 1))) e.release_to = a->release_to;
  e.from_seq = std::max(p.recv_next, acked_seq_ + 1);
  return e;
}

std::uint64_t Session::frame_end_at(std::uint64_t off, std::uint64_t tail) const {
  auto it = std::upper_bound(tx_.begin(), tx_.end(), off,
                             [](std::uint64_t o, const TxFrame& f) { return o < f.end; });
  if (it == tx_.end()) return off;
  std::uint64_t start = it == tx_.begin() ? tail : std::prev(it)->end;
  return start == off ? off : it->end;
}

std::uint64_t Session::record(std::uint64_t end, std::uint32_t payload, bool is_end) {
  std::uint64_t seq = next_seq_++;
  tx_.push_back(TxFrame{seq, end, payload, is_end});
  if (is_end) end_seq_ = seq;
  return seq;
}

std::optional<std::uint64_t> Session::release_written(std::uint64_t offset) {
  std::optional<std::uint64_t> to;
  while (!tx_.empty() && tx_.front().end <= offset) {
    to = tx_.front().end;
    if (!tx_.front().is_end) {
      acked_bytes_ += tx_.front().payload;
      acked_messages_++;
    }
    tx_.pop_front();
  }
  return to;
}

Result<Session::Acked> Session::on_ack(std::uint64_t seq, std::optional<std::uint64_t> window) {
  if (seq >= next_seq_) {
    return protocol_error("bad-ack", "", "acknowledges seq " + std::to_string(seq) + " which was never sent");
  }
  if (window) {
    if (*window < frame::kHeaderSize) return protocol_error("bad-ack", "", "window smaller than one frame header");
    peer_window_ = *window;
  }
  Acked a;
  if (seq > acked_seq_) acked_seq_ = seq;
  while (!tx_.empty() && tx_.front().seq <= acked_seq_) {
    a.release_to = tx_.front().end;
    if (!tx_.front().is_end) {
      acked_bytes_ += tx_.front().payload;
      acked_messages_++;
    }
    tx_.pop_front();
  }
  return a;
}

std::uint64_t Session::credit_end(std::uint64_t tail, std::uint64_t head) const {
  if (tx_.empty()) return head;
  std::uint64_t limit = tail + peer_window_;
  if (limit >= head) return head;
  // The last whole frame within the limit; at least the first one.
  auto it = std::upper_bound(tx_.begin(), tx_.end(), limit,
                             [](std::uint64_t off, const TxFrame& f) { return off < f.end; });
  if (it == tx_.begin()) return tx_.front().end;
  return std::prev(it)->end;
}

std::uint64_t Session::offset_of(std::uint64_t from_seq, std::uint64_t tail) const {
  std::uint64_t off = tail;
  for (const TxFrame& f : tx_) {
    if (f.seq >= from_seq) break;
    off = f.end;
  }
  return off;
}

bool Session::data_acked() const {
  return tx_.empty() || (tx_.size() == 1 && tx_.front().is_end);
}

std::uint32_t Session::largest_unacked() const {
  std::uint32_t m = 0;
  for (const TxFrame& f : tx_) m = std::max(m, f.payload);
  return m;
}

Session::Rx Session::on_frame(std::uint64_t seq) {
  if (seq == recv_next_) {
    recv_next_++;
    return Rx::accept;
  }
  return seq < recv_next_ ? Rx::duplicate : Rx::gap;
}

}  // namespace dl
