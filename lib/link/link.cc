#include "lib/link/link.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <vector>

#include "lib/codec/classic_codec.h"
#include "lib/codec/frame.h"
#include "lib/codec/message_io.h"

namespace dl {
namespace {

constexpr std::size_t kMinUsefulReserve = 64 * 1024;
constexpr std::size_t kInitialRx = 8u << 20;  // the credit (minus slack): as much in flight as the default --window
constexpr std::size_t kRxSlack = 64 * 1024;  // ring room beyond the credit: control frames
constexpr int kMaxProtocolFailureStreak = 8;
constexpr std::size_t kReadSlice = 256 * 1024;
constexpr int kClassicKeepaliveMs = 30;       // the seed's examples time out after 100 ms
constexpr std::size_t kMaxPendingControl = 4096;  // unsent control bytes before ACKs wait

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::size_t rx_capacity_for(std::uint32_t max_message) {
  return std::min<std::size_t>(kInitialRx, std::size_t(max_message) + frame::kHeaderSize + kRxSlack);
}

}  // namespace

Result<Proto> parse_proto(std::string_view text) {
  if (text == "native") return Proto::native;
  if (text == "classic") return Proto::classic;
  if (text == "auto") return Proto::automatic;
  return make_error(ErrorKind::usage, "--proto " + std::string(text),
                    "expected native, classic or auto");
}

struct Link::Conn {
  Fd fd;
  Reactor::Id watch = 0;
  SocketAddress peer;
  bool dialer = false;
  bool established = false;
  bool confirmed = false;           // listener: the dialer spoke after our HELLO
  Proto proto = Proto::native;
  Clock::time_point opened{}, last_rx{}, last_tx{};
  std::vector<std::uint8_t> early;  // bytes read before promotion (candidates)
  std::string ctrl;                 // control frames waiting to go out, whole frames only
  std::size_t ctrl_off = 0;
  std::uint64_t send_off = 0;       // tx ring offset written to this connection
  bool shut_wr = false;
  bool rx_paused = false;
  std::unique_ptr<TlsSession> tls;  // with keys: every byte goes through it (declared after
                                    // fd, so it goes first: it never outlives its socket)
  std::optional<Error> io_error;    // why the last conn_recv/conn_send failed (TLS)
  bool heard = false;               // anything received on this connection yet
};

Link::Link(Reactor& reactor, LinkOptions options, LinkObserver* observer)
    : reactor_(reactor),
      opt_(std::move(options)),
      obs_(observer),
      session_(SessionConfig{opt_.listen, std::min(opt_.max_message, frame::kHardMaxPayload),
                             static_cast<std::uint32_t>(std::max(0, opt_.timeout_ms)),
                             rx_capacity_for(std::min(opt_.max_message, frame::kHardMaxPayload)) - kRxSlack,
                             opt_.incarnation}),
      timer_(reactor, [this] { on_timer(); }),
      trust_(opt_.wait_s != 0) {
  opt_.max_message = std::min(opt_.max_message, frame::kHardMaxPayload);
  if (opt_.receive_only) finish();
}

Link::~Link() {
  close();
}

std::size_t Link::frame_overhead() const {
  return wire_proto_ == Proto::classic ? classic::kOverhead : frame::kHeaderSize;
}

std::string Link::peer() const { return active_ ? active_->peer.to_string() : std::string(); }

std::string Link::peer_name() const {
  if (active_) return active_->peer.to_string();
  if (!last_peer_.empty()) return last_peer_;
  return opt_.listen ? local_.to_string() : opt_.endpoint.to_string();
}

bool Link::ready() const { return active_ && active_->established; }

// What a one-session listener reports goes to our observer, and an accept failure becomes the
// last error a give-up message names.
struct Link::ListenerEvents : LinkObserver {
  Link* link;
  explicit ListenerEvents(Link* l) : link(l) {}
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override {
    if (e == LinkEvent::warning && detail == "accept") {
      if (why) link->last_error_ = *why;
      return;
    }
    if (link->obs_) link->obs_->on_event(e, detail, why);
  }
};

Status Link::start_rings() {
  started_ = true;
  if (opt_.proto == Proto::classic) wire_proto_ = Proto::classic;
  if (opt_.proto == Proto::automatic && !opt_.listen) {
    return make_error(ErrorKind::usage, "--proto auto",
                      "only a listener can detect its peer's protocol; a dialer needs native or classic");
  }
  auto tx = ByteRing::create(opt_.window);
  if (!tx) return tx.error();
  tx_ = std::move(*tx);
  auto rx = ByteRing::create(rx_capacity_for(opt_.max_message));
  if (!rx) return rx.error();
  rx_ = std::move(*rx);
  flush_hook_ = reactor_.before_poll([this] { flush(); });
  waiting_since_ = Clock::now();
  return ok_status();
}

Status Link::start(SessionListener& listener) {
  if (started_) return ok_status();
  if (!opt_.listen) return make_error(ErrorKind::usage, "link", "a dialing link serves no listener");
  if (auto st = start_rings(); !st) return st;
  listener_ = &listener;
  listener.attach(*this);
  local_ = listener.local();
  if (opt_.wait_s >= 0 && std::isfinite(opt_.wait_s)) give_up_at_ = deadline_after(waiting_since_, opt_.wait_s);
  reschedule();
  return ok_status();
}

Status Link::start() {
  if (started_) return ok_status();
  if (auto st = start_rings(); !st) return st;
  if (opt_.tls.any() && !opt_.listen) {
    auto cfg = TlsConfig::load(opt_.tls, TlsRole::dialer);
    if (!cfg) return cfg.error();
    tls_ = std::move(*cfg);
  }
  auto now = waiting_since_;
  bool bounded = opt_.wait_s >= 0 && std::isfinite(opt_.wait_s);
  if (opt_.listen) {
    if (bounded) give_up_at_ = deadline_after(now, opt_.wait_s);
    ListenerOptions lo = listener_options(opt_);
    lo.incarnation = session_.incarnation();
    listener_events_ = std::make_unique<ListenerEvents>(this);
    // One session: every newcomer is offered to us; Session::admit decides.
    own_listener_ = std::make_unique<SessionListener>(reactor_, std::move(lo), listener_events_.get(),
                                                      [this](const Newcomer&, Error*) { return this; });
    if (auto st = own_listener_->start(); !st) {
      own_listener_.reset();
      return st;
    }
    listener_ = own_listener_.get();
    listener_->attach(*this);
    local_ = listener_->local();
    if (obs_) obs_->on_event(LinkEvent::listening, local_.to_string(), nullptr);
  } else {
    // start() reports a name that does not resolve now (the tools exit 3 before anything
    // else, the API returns it); the Connector then looks the name up afresh every round.
    if (auto a = resolve(opt_.endpoint, false); !a) return a.error();
    connector_ = make_connector(bounded ? deadline_after(now, opt_.wait_s) : Clock::time_point::max());
    connector_->start();
  }
  reschedule();
  return ok_status();
}

void Link::listener_gone(SessionListener& l) {
  if (listener_ == &l) listener_ = nullptr;
}

// ---------------------------------------------------------------- connection management

std::unique_ptr<SecureConnector> Link::make_connector(Clock::time_point deadline) {
  ConnectorOptions co;
  co.backoff = opt_.backoff;
  co.deadline = deadline;
  co.attempt_timeout = std::chrono::milliseconds(std::max(opt_.handshake_ms, opt_.timeout_ms));
  // A name that resolved once and fails later is a DNS blip during a reconnect: retried.
  co.fail_fast_on_resolve = !ever_connected_;
  co.on_retry = [this](Clock::duration delay, const Error& last) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
    if (obs_) obs_->on_event(LinkEvent::retrying, std::to_string(ms) + " ms", &last);
  };
  return std::make_unique<SecureConnector>(
      reactor_, opt_.endpoint, co, tls_, std::chrono::milliseconds(opt_.handshake_ms),
      [this](Result<SecureConnected> r) { on_dialed(std::move(r)); },
      [this](const Error& e) { on_handshake_refused(e); });
}

void Link::on_dialed(Result<SecureConnected> r) {
  if (!r) {
    give_up(&r.error());  // the deadline passed (or the name never resolved)
    return;
  }
  auto c = std::make_unique<Conn>();
  c->fd = std::move(r->fd);
  c->tls = std::move(r->tls);
  c->peer = r->peer;
  c->dialer = true;
  connected(std::move(c));
}

// A dialed connection failed its TLS handshake: like a failed connect, given up at once when
// retrying cannot help.
void Link::on_handshake_refused(Error e) {
  e = trust_.judge(std::move(e));  // damage on the path, or really refused (handshake_trust.h)
  last_error_ = e;
  if (e.kind == ErrorKind::auth || e.kind == ErrorKind::protocol) {
    stats_.protocol_errors++;
    if (++protocol_failure_streak_ >= kMaxProtocolFailureStreak) e.final = true;
  }
  if (!is_retryable(e)) {
    fail(e);
    return;
  }
  if (connector_ && !connector_->active()) connector_->retry(e);  // backoff, same deadline
  reschedule();
}

void Link::connected(std::unique_ptr<Conn> c) {
  if (opt_.proto == Proto::classic) {
    promote(std::move(c), Proto::classic, nullptr);
    return;
  }
  // Native: say HELLO and wait for the listener's; the connection counts once it answers.
  c->proto = Proto::native;
  c->opened = c->last_rx = c->last_tx = Clock::now();
  rx_.truncate_to(parse_off_);
  active_ = std::move(c);
  active_->watch = reactor_.watch(active_->fd.get(), POLLIN,
                                  [this, p = active_.get()](short ev) { on_conn_io(p, ev); });
  queue_hello();
  reschedule();
}

// ---------------------------------------------------------------- TLS (keys)

// Decrypted bytes held inside TLS raise no poll() event: read them before sleeping.
void Link::drain_tls_input() {
  Conn* a = active_.get();
  if (!a || !a->tls || !a->established || a->rx_paused || !a->tls->has_buffered_input()) return;
  read_some(a);
  a = active_.get();
  if (a && a->tls && !a->rx_paused && a->tls->has_buffered_input()) reactor_.wake();
}

Error Link::io_failure(Conn* c, const std::string& what, int err) {
  if (err == EPROTO && c->io_error) {
    Error e = *c->io_error;
    if (e.kind == ErrorKind::auth && trust_.known() && !opt_.listen) e.final = false;
    return e;
  }
  return errno_error(ErrorKind::disconnected, what + " " + c->peer.to_string(), err);
}

ssize_t Link::conn_recv(Conn* c, void* buf, std::size_t n) {
  if (!c->tls) return ::recv(c->fd.get(), buf, n, MSG_DONTWAIT);
  ssize_t got = c->tls->recv(buf, n);
  // The listener accepted us once it sent anything (TLS 1.3 sends a ticket after checking our
  // certificate): from then on a failed handshake with it is likelier damage than a refusal.
  if (c->dialer && c->tls->peer_accepted()) trust_.accepted();
  if (got < 0 && errno == EPROTO) c->io_error = c->tls->error();
  return got;
}

ssize_t Link::conn_send(Conn* c, const iovec* iov, int n_iov) {
  if (!c->tls) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<std::size_t>(n_iov);
    return ::sendmsg(c->fd.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  ssize_t sent = c->tls->sendv(iov, n_iov);
  if (sent < 0 && errno == EPROTO) c->io_error = c->tls->error();
  return sent;
}

// Pushes out a TLS record that is built but not yet sent. False: still pending (wait for
// POLLOUT) or the connection failed (then it is gone).
bool Link::conn_flush_tls(Conn* c) {
  if (!c->tls || !c->tls->has_pending_output()) return true;
  TlsResult r = c->tls->flush();
  if (r.status == TlsIo::failed) {
    c->io_error = c->tls->error();
    connection_lost(io_failure(c, "send to", EPROTO));
    return false;
  }
  return !c->tls->has_pending_output();
}

// Ends our sending direction: TLS close_notify first (so the peer can tell an end from a cut),
// then the socket's own FIN.
void Link::conn_shutdown(Conn* c) {
  if (c->tls && c->tls->established()) c->tls->shutdown();
  ::shutdown(c->fd.get(), SHUT_WR);
}

void Link::on_conn_io(Conn* c, short revents) {
  if (c != active_.get()) return;
  if (revents & (POLLIN | POLLHUP | POLLERR)) read_some(c);
  if (c != active_.get()) return;  // dropped while reading
  if (revents & POLLOUT) write_some(c);
}

Status Link::adopt(Newcomer& n) {
  std::string ctx = "from " + n.peer.to_string();
  if (closed_ || !started_ || !opt_.listen) {
    return protocol_error("session-lost", ctx, "this session is over", /*retryable=*/false);
  }
  if (n.proto == Proto::classic) {
    if (native_session_in_progress()) {
      return protocol_error("session-busy", ctx, "a native session is in progress here");
    }
    // Classic has no session ids, so, as with the seed's server, a newer connection is the
    // peer come back and replaces the old one.
  } else {
    if (!n.hello) return protocol_error("bad-hello", ctx, "expected a handshake");
    if (ever_connected_ && wire_proto_ == Proto::classic && !completed_) {
      return protocol_error("session-busy", ctx, "a classic session is in progress there");
    }
    // Admission: adopt a new session, resume ours, or refuse this newcomer alone. Whatever it
    // says, the live session is not touched unless it presents that session's current token.
    bool over = completed_ && opt_.keep_open;
    auto v = session_.admit(*n.hello, over || (!ever_connected_ && !session_.known()));
    if (v.action == Session::Admit::refuse) {
      Error e = v.why;
      e.context = ctx;
      return e;
    }
    if (v.action == Session::Admit::adopt && session_.known()) reset_session();
  }
  auto c = std::make_unique<Conn>();
  c->fd = std::move(n.fd);
  c->peer = n.peer;
  c->tls = std::move(n.tls);
  c->proto = n.proto;
  c->opened = n.opened;
  c->last_rx = c->last_tx = Clock::now();
  c->heard = !n.early.empty();
  c->early = std::move(n.early);
  n.early.clear();
  stats_.wire_bytes_in += c->early.size();
  frame::Hello hello = n.hello ? *n.hello : frame::Hello{};
  Proto proto = n.proto;
  Conn* p = c.get();
  promote(std::move(c), proto, proto == Proto::native ? &hello : nullptr);
  // Bytes that came behind the handshake may wait inside TLS, where poll() cannot see them.
  if (p == active_.get() && !closed_ && p->tls && p->tls->has_buffered_input()) read_some(p);
  return ok_status();
}

void Link::promote(std::unique_ptr<Conn> c, Proto proto, const frame::Hello* hello) {
  Conn* conn = c ? c.get() : active_.get();
  bool resumed = false;
  std::uint64_t resend_from = tx_.tail();
  if (proto == Proto::native && hello) {
    if (conn->dialer) {
      if (auto st = session_.check_answer(*hello); !st) {
        Error e = st.error();
        e.context = "peer " + conn->peer.to_string();
        if (e.id == "session-lost") {
          e.kind = ErrorKind::disconnected;
          e.context = "peer " + conn->peer.to_string();
          e.detail = std::string("session lost: the ") + (opt_.receive_only ? "sender" : "receiver") +
                     " restarted (" + e.detail + ")";
        }
        if (is_retryable(e)) {
          connection_lost(e);
        } else {
          send_error_and_close(conn, e);
          fail(e);
        }
        return;
      }
    }
    resumed = session_.established_once();
    auto est = session_.establish(*hello);
    if (est.release_to) {
      release_tx(*est.release_to);
      notify_writable();
    }
    update_ack_stats();
    std::uint64_t from_seq = est.from_seq;
    resend_from = session_.offset_of(from_seq, tx_.tail());
  }
  if (c) {
    if (active_) {
      Error e = make_error(ErrorKind::disconnected, "connection to " + active_->peer.to_string(),
                           "replaced by the session's new connection");
      drop_conn(active_.get(), e, active_->established);
      active_.reset();
    }
    rx_.truncate_to(parse_off_);  // a frame cut off with the old connection is re-sent whole
    rx_blocked_ = false;
    active_ = std::move(c);
    active_->watch = reactor_.watch(active_->fd.get(), POLLIN,
                                    [this, p = active_.get()](short ev) { on_conn_io(p, ev); });
  }
  wire_proto_ = proto;
  Conn* a = active_.get();
  a->proto = proto;
  a->established = true;
  a->last_rx = a->last_tx = Clock::now();
  last_peer_ = a->peer.to_string();
  if (proto == Proto::native) {
    a->early.clear();  // it held the HELLO
    if (!a->dialer) {
      queue_hello();
    } else {
      queue_ack();  // tells the listener we hold its new token (it retires the old one)
      a->confirmed = true;
    }
    a->send_off = resend_from;
    if (max_sent_off_ > resend_from) stats_.resent_bytes += max_sent_off_ - resend_from;
  } else {
    // Classic: what was fully written is gone; a frame cut in the middle goes out again whole.
    a->send_off = tx_.tail();
    classic_frames_ = 0;
  }
  if (ever_connected_) stats_.reconnects++;
  stats_.connections++;
  ever_connected_ = true;
  give_up_at_.reset();
  last_error_.reset();
  if (obs_) {
    std::string detail = a->peer.to_string() + (proto == Proto::classic ? " (classic" : " (native");
    if (a->tls) detail += a->tls->resumed() ? ", TLS resumed" : ", TLS " + a->tls->peer_identity();
    detail += ")";
    obs_->on_event(resumed ? LinkEvent::resumed : LinkEvent::connected, detail, nullptr);
    if (a != active_.get() || closed_) return;
  }
  if (!a->early.empty()) drain_early(a);
  if (a != active_.get()) return;
  update_interest();
  notify_writable();
}

void Link::drain_early(Conn* c) {
  auto w = rx_.writable();
  std::size_t n = std::min(w.size(), c->early.size());
  std::memcpy(w.data(), c->early.data(), n);
  c->early.erase(c->early.begin(), c->early.begin() + static_cast<std::ptrdiff_t>(n));
  rx_.produce(n);
  std::size_t before = rx_queue_.size();
  parse_classic(c);
  if (c == active_.get() && rx_queue_.size() != before && obs_) obs_->on_readable();
}

bool Link::native_session_in_progress() const {
  return ever_connected_ && wire_proto_ == Proto::native && !completed_;
}

bool Link::attempt_in_progress() const {
  return (connector_ && connector_->active()) || (active_ && !active_->established);
}

void Link::drop_conn(Conn* c, const Error& why, bool report) {
  if (!c) return;
  reactor_.unwatch(c->watch);
  c->watch = 0;
  if (report && obs_) obs_->on_event(LinkEvent::disconnected, c->peer.to_string(), &why);
  c->fd.reset();
}

void Link::connection_lost(const Error& why, bool orderly) {
  bool was_established = active_ && active_->established;
  if (active_) {
    drop_conn(active_.get(), why, was_established && !completed_);
    active_.reset();
  }
  rx_.truncate_to(parse_off_);
  rx_blocked_ = false;  // the partial frame that needed the room is gone
  last_error_ = why;
  if (closed_) return;
  if (why.kind == ErrorKind::protocol || why.kind == ErrorKind::auth) {
    stats_.protocol_errors++;
    // A peer that breaks the protocol again and again with no progress in between is not a
    // flaky link: give up instead of reconnecting for ever.
    if (++protocol_failure_streak_ >= kMaxProtocolFailureStreak) {
      Error e = why;
      e.detail += " (" + std::to_string(protocol_failure_streak_) + " times in a row without progress)";
      session_over(e);
      return;
    }
  }
  if (completed_ && !orderly && linger_until_ && wire_proto_ == Proto::native) {
    // We completed when we queued our last ACK, but a cut may have taken it with it, and
    // without it the peer cannot complete (it would retry and give up, claiming a failure for
    // data we have). So, as TCP's TIME_WAIT keeps answering a last FIN, stay resumable until
    // the linger time is up: a dialer reconnects, a listener takes the resume.
    if (!opt_.listen) {
      // Past the linger the timer ends the link well; the connector must not give up first.
      connector_ = make_connector(*linger_until_ + std::chrono::seconds(1));
      connector_->retry(why);
      if (closed_) return;
    }
    reschedule();
    return;
  }
  if (completed_) {
    // The peer closed after everything was acknowledged (or our linger ran out, the peer
    // gone for good after a cut): that is the normal end.
    linger_until_.reset();
    if (opt_.keep_open && opt_.listen) {
      reset_session();
      reschedule();
      return;
    }
    closed_ = true;
    close();
    if (obs_) obs_->on_event(LinkEvent::closed, "", nullptr);
    return;
  }
  if (!is_retryable(why)) {
    session_over(why);
    return;
  }
  auto now = Clock::now();
  // The reconnect window opens when an established connection drops; a failed handshake
  // keeps whatever deadline was running (--wait for a first connect).
  if (was_established) {
    waiting_since_ = now;
    auto deadline = opt_.reconnect_s >= 0 && std::isfinite(opt_.reconnect_s) ? deadline_after(now, opt_.reconnect_s)
                                                                               : Clock::time_point::max();
    if (!opt_.listen) {
      connector_ = make_connector(deadline);  // a fresh backoff for a fresh outage
    } else if (deadline != Clock::time_point::max()) {
      give_up_at_ = deadline;
    } else {
      give_up_at_.reset();
    }
  }
  if (!opt_.listen && connector_ && !connector_->active()) {
    connector_->retry(why);  // after a backoff delay; at once to give_up() past the deadline
    if (closed_) return;
  }
  reschedule();
}

// A session that cannot go on. A keep-open listener logs it and serves the next one; anyone
// else fails with it.
void Link::session_over(const Error& why) {
  if (closed_) return;
  if (opt_.keep_open && opt_.listen && ever_connected_) {
    if (active_) {
      drop_conn(active_.get(), why, false);
      active_.reset();
    }
    if (obs_) obs_->on_event(LinkEvent::abandoned, last_peer_, &why);
    reset_session();
    reschedule();
    return;
  }
  fail(why);
}

// Out of patience: report the last real reason (refused, unreachable, timeout ...) and the time
// actually waited.
void Link::give_up(const Error* dial_error) {
  double waited = seconds_since(waiting_since_);
  if (!ever_connected_ && opt_.listen) {
    session_over(make_error(ErrorKind::timeout, "listen " + local_.to_string(),
                            "no peer connected within " + seconds_text(waited) + " s"));
    return;
  }
  Error e = dial_error  ? *dial_error
             : last_error_ ? *last_error_
                           : make_error(ErrorKind::connect, "connect " + opt_.endpoint.to_string(),
                                     "no connection");
  if (ever_connected_) {
    session_over(make_error(ErrorKind::disconnected, "peer " + peer_name(),
                            "gone for " + seconds_text(waited) + " s; last error: " + e.message()));
  } else {
    if (waited >= 0.05) {
      // Never between the context and the system's reason: "connect HOST:PORT (tried for 10.0 s):
      // Connection refused", "TLS ...: bad record (tried for 10.0 s)".
      std::string note = "(tried for " + seconds_text(waited) + " s)";
      if (e.sys_errno != 0 && e.detail.empty()) e.context += " " + note;
      else e.detail += (e.detail.empty() ? "" : " ") + note;
    }
    fail(e);
  }
}

void Link::fail(const Error& e) {
  if (closed_) return;
  failure_ = e;
  closed_ = true;
  close();
  // Messages parsed in the same read as the fatal frame were never announced.
  if (obs_ && !rx_queue_.empty()) obs_->on_readable();
  if (obs_) obs_->on_event(LinkEvent::closed, "", &e);
}

void Link::close() {
  closed_ = true;
  reactor_.wake();  // a close inside a before-poll hook must not leave the loop asleep
  timer_.cancel();
  if (flush_hook_) reactor_.remove_before_poll(flush_hook_);
  flush_hook_ = 0;
  if (active_) {
    reactor_.unwatch(active_->watch);
    active_.reset();
  }
  if (connector_) connector_->cancel();
  if (listener_) listener_->detach(*this);
  listener_ = nullptr;
  own_listener_.reset();  // the port is free again at once
}

void Link::abandon(std::string_view reason, int flush_ms) {
  if (!closed_ && active_ && active_->established && wire_proto_ == Proto::native && !completed_) {
    Conn* c = active_.get();
    stopping_ = true;  // no data beyond the frame being written
    if (session_.ack_due()) queue_ack();
    std::string f = frame::encode_error_frame("peer-stopped", reason, false, unix_now());
    c->ctrl += f;
    auto deadline = Clock::now() + std::chrono::milliseconds(flush_ms);
    while (c->fd.valid() && has_output(c)) {
      write_some(c);
      if (active_.get() != c || !has_output(c)) break;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{c->fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    }
    if (active_.get() == c && c->fd.valid()) {
      conn_shutdown(c);
      // Closing with unread bytes (the peer's acks) would reset the connection, and a reset
      // can destroy the notice before the peer reads it: read until the peer closes too, or
      // the same bounded time runs out.
      std::uint8_t sink[16384];
      while (true) {
        ssize_t n = ::recv(c->fd.get(), sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
        if (n > 0) continue;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) break;
        pollfd p{c->fd.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
      }
    }
  }
  close();
}

void Link::reset_session() {
  session_.reset();
  release_tx(tx_.head());
  end_requested_ = false;
  stopping_ = false;
  max_sent_off_ = tx_.head();
  // Messages of the old session not yet taken stay deliverable; they are no longer acked.
  for (auto& m : rx_queue_) m.seq = 0;
  while (!rx_queue_.empty() && rx_queue_.back().end) rx_queue_.pop_back();
  rx_.truncate_to(parse_off_);
  if (rx_queue_.empty()) rx_.release_to(parse_off_);
  peer_finished_ = completed_ = false;
  ever_connected_ = false;
  linger_until_.reset();
  give_up_at_.reset();
  waiting_since_ = Clock::now();
  protocol_failure_streak_ = 0;
  if (opt_.receive_only) finish();
}

// ---------------------------------------------------------------- timers

void Link::reschedule() {
  if (closed_) return;
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  if (!attempt_in_progress() && !ready()) consider(give_up_at_);
  consider(linger_until_);
  if (active_) {
    Conn* a = active_.get();
    if (!a->established) {
      consider(a->opened + std::chrono::milliseconds(std::max(opt_.handshake_ms, opt_.timeout_ms)));
    } else {
      if (opt_.timeout_ms > 0 && !a->rx_paused) {
        consider(a->last_rx + std::chrono::milliseconds(opt_.timeout_ms));
      }
      int ka = keepalive_interval();
      if (ka > 0) consider(a->last_tx + std::chrono::milliseconds(ka));
    }
  }
  if (next) timer_.arm(*next);
  else timer_.cancel();
}

int Link::keepalive_interval() const {
  if (opt_.keepalive_ms > 0) return opt_.keepalive_ms;
  if (opt_.keepalive_ms < 0) return 0;  // never
  // The classic peer's timeout is unknown: the seed's own examples use 100 ms.
  if (wire_proto_ == Proto::classic) return kClassicKeepaliveMs;
  int t = 0;
  for (int v : {opt_.timeout_ms, static_cast<int>(session_.peer_timeout_ms())}) {
    if (v > 0 && (t == 0 || v < t)) t = v;
  }
  return t > 0 ? std::max(t / 3, 20) : 0;
}

void Link::on_timer() {
  if (closed_) return;
  auto now = Clock::now();
  if (linger_until_ && now >= *linger_until_) {
    linger_until_.reset();
    connection_lost(make_error(ErrorKind::disconnected, "linger", "peer did not close"), /*orderly=*/true);
    return;
  }
  if (active_) {
    Conn* a = active_.get();
    if (!a->established) {
      if (now >= a->opened + std::chrono::milliseconds(std::max(opt_.handshake_ms, opt_.timeout_ms))) {
        connection_lost(make_error(ErrorKind::timeout, "handshake with " + a->peer.to_string(),
                                   "no answer to the handshake"));
        return;
      }
    } else {
      if (opt_.timeout_ms > 0 && !a->rx_paused &&
          now >= a->last_rx + std::chrono::milliseconds(opt_.timeout_ms)) {
        connection_lost(make_error(ErrorKind::timeout, "receive from " + a->peer.to_string(),
                                   "nothing received for " + std::to_string(opt_.timeout_ms) + " ms"));
        return;
      }
      int ka = keepalive_interval();
      if (ka > 0 && now >= a->last_tx + std::chrono::milliseconds(ka)) send_keepalive();
    }
  }
  if (give_up_at_ && now >= *give_up_at_ && !ready() && !attempt_in_progress()) {
    give_up();
    return;
  }
  reschedule();
}

// ---------------------------------------------------------------- sending

Status Link::ensure_tx_room(std::size_t frame_bytes) {
  if (tx_.capacity() >= frame_bytes) return ok_status();
  auto g = tx_.grown(frame_bytes);
  if (!g) return g.error();
  tx_ = std::move(*g);
  return ok_status();
}

bool Link::proto_known() const {
  return opt_.proto != Proto::automatic || ever_connected_;
}

std::uint32_t Link::send_limit() const {
  bool peer_known = wire_proto_ == Proto::native && session_.established_once();
  return peer_known ? std::min(opt_.max_message, session_.peer_max_message()) : opt_.max_message;
}

std::optional<std::uint32_t> Link::known_send_limit() const {
  if (!proto_known()) return std::nullopt;
  if (wire_proto_ == Proto::native && !session_.established_once()) return std::nullopt;
  return send_limit();
}

std::span<std::uint8_t> Link::reserve(std::size_t max_payload) {
  // A listener that detects its peer's protocol encodes nothing before it knows it.
  if (end_requested_ || closed_ || !started_ || !proto_known()) return {};
  std::size_t want = std::min<std::size_t>(max_payload, send_limit());
  std::size_t over = frame_overhead();
  if (!ensure_tx_room(over + want)) return {};
  if (tx_.free_space() <= over) return {};
  std::size_t room = tx_.free_space() - over;
  if (room < std::min(want, kMinUsefulReserve)) return {};
  std::size_t header = wire_proto_ == Proto::classic ? classic::kHeaderSize : frame::kHeaderSize;
  return {tx_.at(tx_.head() + header), std::min(want, room)};
}

void Link::commit(std::size_t n, double timestamp) {
  if (n == 0) return;
  std::uint8_t* start = tx_.at(tx_.head());
  if (wire_proto_ == Proto::classic) {
    classic::encode_header(start, n, timestamp);
    classic::encode_footer(start + classic::kHeaderSize + n);
    take_encoded(classic::kOverhead + n, n);
    return;
  }
  frame::encode_data(start, session_.next_seq(), timestamp, {start + frame::kHeaderSize, n}, integrity());
  take_encoded(frame::kHeaderSize + n, n);
}

// A message of n payload bytes is encoded at the ring's head, `total` bytes with its framing.
void Link::take_encoded(std::size_t total, std::size_t n) {
  tx_.produce(total);
  session_.record(tx_.head(), static_cast<std::uint32_t>(n), false);
  stats_.bytes_sent += n;
  stats_.messages_sent++;
  reactor_.request_pass();  // our flush may already have run in this pass (another link's callback)
}

bool Link::try_send(std::span<const std::uint8_t> payload, double timestamp, Error* error) {
  if (payload.size() > send_limit()) {
    if (error) {
      bool peer = send_limit() < opt_.max_message;
      *error = make_error(ErrorKind::too_large, "message",
                          "message of " + std::to_string(payload.size()) +
                              " bytes exceeds the " + (peer ? "peer's " : "") + "limit of " +
                              std::to_string(send_limit()) + " bytes (--max-message)");
      error->id = "too-large";
    }
    return false;
  }
  if (end_requested_ || closed_ || !started_) {
    if (error) {
      *error = failure_ ? *failure_ : make_error(ErrorKind::cancelled, "send", "link is closed");
    }
    return false;
  }
  if (!proto_known()) return false;
  std::size_t over = frame_overhead();
  if (auto st = ensure_tx_room(over + payload.size()); !st) {
    if (error) *error = st.error();
    return false;
  }
  if (tx_.free_space() < over + payload.size()) return false;
  if (wire_proto_ == Proto::native && !payload.empty()) {
    // Copy and checksum in one pass (a bridge forwards every message this way): the payload is
    // read once, and checksummed while each block is still in the first-level cache.
    frame::encode_data_copy(tx_.at(tx_.head()), session_.next_seq(), timestamp, payload, integrity());
    take_encoded(frame::kHeaderSize + payload.size(), payload.size());
    return true;
  }
  std::size_t header = wire_proto_ == Proto::classic ? classic::kHeaderSize : frame::kHeaderSize;
  if (!payload.empty()) std::memcpy(tx_.at(tx_.head() + header), payload.data(), payload.size());
  if (payload.empty()) {
    // Classic cannot carry an empty message (the seed drops it as a keepalive); native can.
    if (wire_proto_ == Proto::classic) return true;
    std::uint8_t* start = tx_.at(tx_.head());
    frame::encode_data(start, session_.next_seq(), timestamp, {}, integrity());
    tx_.produce(frame::kHeaderSize);
    session_.record(tx_.head(), 0, false);
    stats_.messages_sent++;
    reactor_.request_pass();
    return true;
  }
  commit(payload.size(), timestamp);
  return true;
}

bool Link::try_forward(const Message& m, Error* error) {
  if (m.payload.empty()) return try_send(m.payload, m.timestamp, error);
  if (m.payload.size() > send_limit() || end_requested_ || closed_ || !started_) {
    return try_send(m.payload, m.timestamp, error);  // the same refusals, said the same way
  }
  if (!proto_known()) return false;
  std::size_t over = frame_overhead();
  std::size_t n = m.payload.size();
  if (auto st = ensure_tx_room(over + n); !st) {
    if (error) *error = st.error();
    return false;
  }
  if (tx_.free_space() < over + n) return false;
  // The payload's place in the ring is taken (so the window counts it) but never written.
  std::uint8_t* start = tx_.at(tx_.head());
  std::uint64_t payload_at = tx_.head();
  if (wire_proto_ == Proto::classic) {
    classic::encode_header(start, n, m.timestamp);
    classic::encode_footer(start + classic::kHeaderSize + n);
    payload_at += classic::kHeaderSize;
  } else {
    std::uint64_t seq = session_.next_seq();
    if (m.checksum && m.seq == seq && integrity() == frame::Integrity::checksum) {
      frame::encode_data_header(start, seq, m.timestamp, static_cast<std::uint32_t>(n), *m.checksum);
    } else {
      frame::encode_data(start, seq, m.timestamp, m.payload, integrity());  // with keys: no checksum
    }
    payload_at += frame::kHeaderSize;
  }
  borrowed_.push_back({payload_at, payload_at + n, m.payload.data()});
  take_encoded(over + n, n);
  return true;
}

void Link::release_tx(std::uint64_t to) {
  tx_.release_to(to);
  while (!borrowed_.empty() && borrowed_.front().end <= to) borrowed_.pop_front();
}

std::size_t Link::tx_iov(iovec* iov, int& n, int max, std::uint64_t from, std::uint64_t to) const {
  std::size_t covered = 0;
  // The first borrowed payload that ends after `from`: a search, since small messages can put
  // thousands in flight and this runs for every write.
  auto b = std::partition_point(borrowed_.begin(), borrowed_.end(), [from](const Borrowed& x) { return x.end <= from; });
  while (from < to && n < max) {
    std::uint64_t piece_end;
    const std::uint8_t* p;
    if (b != borrowed_.end() && b->start <= from) {
      piece_end = std::min(to, b->end);
      p = b->data + (from - b->start);
      ++b;
    } else {
      piece_end = b != borrowed_.end() ? std::min(to, b->start) : to;
      p = tx_.at(from);
    }
    std::size_t len = static_cast<std::size_t>(piece_end - from);
    // One iovec for bytes that follow each other in memory (all of them, when nothing is borrowed).
    if (n > 0 && static_cast<const std::uint8_t*>(iov[n - 1].iov_base) + iov[n - 1].iov_len == p) {
      iov[n - 1].iov_len += len;
    } else {
      iov[n++] = {const_cast<std::uint8_t*>(p), len};
    }
    covered += len;
    from = piece_end;
  }
  return covered;
}

void Link::finish() {
  end_requested_ = true;
  reactor_.request_pass();
}

bool Link::finished() const {
  if (!end_requested_) return false;
  if (wire_proto_ == Proto::classic) return session_.unacked() == 0;
  return session_.end_acked();
}

bool Link::acknowledged() const {
  if (wire_proto_ == Proto::classic) return session_.unacked() == 0;
  return session_.data_acked();
}

void Link::queue_end_if_room() {
  if (!end_requested_ || session_.end_queued() || wire_proto_ == Proto::classic || !proto_known()) return;
  if (!ensure_tx_room(frame::kHeaderSize) || tx_.free_space() < frame::kHeaderSize) return;
  std::uint8_t* start = tx_.at(tx_.head());
  frame::encode(start, frame::Type::end, session_.next_seq(), unix_now(), {});
  tx_.produce(frame::kHeaderSize);
  session_.record(tx_.head(), 0, true);
}

void Link::queue_control(frame::Type type, std::uint64_t seq, std::span<const std::uint8_t> payload) {
  if (!active_) return;
  std::size_t old = active_->ctrl.size();
  active_->ctrl.resize(old + frame::kHeaderSize + payload.size());
  auto* p = reinterpret_cast<std::uint8_t*>(active_->ctrl.data()) + old;
  if (!payload.empty()) std::memcpy(p + frame::kHeaderSize, payload.data(), payload.size());
  frame::encode(p, type, seq, unix_now(), {p + frame::kHeaderSize, payload.size()});
}

void Link::abort_connection() {
  if (active_) {
    connection_lost(make_error(ErrorKind::disconnected, "connection to " + active_->peer.to_string(),
                               "aborted on request"));
  }
}

void Link::queue_hello() {
  frame::Hello h = session_.hello();
  std::uint8_t payload[frame::kHelloSize];
  frame::encode_hello(payload, h);
  queue_control(frame::Type::hello, 0, payload);
}

void Link::queue_ack() {
  // ACKs are cumulative: while earlier control bytes still wait for a peer that does not read,
  // a new one would only pile up (memory a stranger could grow). The ACK stays due and goes
  // with the first flush after they drained.
  if (active_ && active_->ctrl.size() - active_->ctrl_off >= kMaxPendingControl) return;
  std::uint8_t payload[frame::kAckSize];
  frame::encode_ack(payload, session_.window());
  queue_control(frame::Type::ack, session_.delivered_seq(), payload);
  session_.ack_sent();
  stats_.acks_sent++;
}

void Link::send_keepalive() {
  if (!ready()) return;
  if (active_->ctrl.size() > active_->ctrl_off) {
    // Bytes are still waiting to go: they will feed the peer's timeout when they do, and a
    // peer that reads nothing must not make the queue grow by one keepalive per interval.
    active_->last_tx = Clock::now();
    reschedule();
    return;
  }
  if (wire_proto_ == Proto::classic) {
    std::vector<std::uint8_t> f;
    classic::append_frame(f, {}, classic::kKeepaliveTimestamp);
    active_->ctrl.append(reinterpret_cast<const char*>(f.data()), f.size());
  } else {
    queue_control(frame::Type::keepalive, 0, {});
  }
  stats_.keepalives_sent++;
  active_->last_tx = Clock::now();  // do not queue another before this one has gone
  write_some(active_.get());
  reschedule();
}

void Link::send_error_and_close(Conn* c, const Error& e) {
  if (c) send_refusal(c->fd.get(), c->tls.get(), c->proto, e);
}

void Link::update_ack_stats() {
  stats_.bytes_acked = session_.acked_bytes();
  stats_.messages_acked = session_.acked_messages();
}

bool Link::apply_ack(Result<Session::Acked> a, const std::string& ctx) {
  if (!a) {
    Error e = a.error();
    e.context = ctx;
    connection_lost(e);
    return false;
  }
  if (a->release_to) {
    release_tx(*a->release_to);
    if (active_ && active_->send_off < tx_.tail()) active_->send_off = tx_.tail();
    protocol_failure_streak_ = 0;
    update_ack_stats();
    notify_writable();
  }
  return true;
}

void Link::release_written_classic() {
  if (!active_) return;
  if (auto to = session_.release_written(active_->send_off)) {
    release_tx(*to);
    update_ack_stats();
    notify_writable();
  }
}

void Link::notify_writable() { writable_pending_ = true; }

void Link::flush() {
  if (closed_) return;
  drain_tls_input();
  if (closed_) return;
  // Let the application refill the ring, write, and repeat while writing freed room (classic
  // releases frames as soon as they are written): nothing else would wake us for it.
  for (int round = 0; round < 8; ++round) {
    if (writable_pending_) {
      writable_pending_ = false;
      if (obs_) obs_->on_writable();
      if (closed_) return;
    }
    queue_end_if_room();
    if (ready() && wire_proto_ == Proto::native && session_.ack_due()) queue_ack();
    if (active_) write_some(active_.get());
    if (closed_) return;
    if (!writable_pending_) break;
  }
  check_completion();
  if (closed_) return;
  update_interest();
  if (writable_pending_) reactor_.wake();  // more room than one flush could use: come back
}

// How far the data in the ring may go out on this connection now: everything (classic), or
// whole frames within the peer's credit (native); only the frame in progress when stopping.
std::uint64_t Link::write_limit(const Conn* c) const {
  if (!c->established) return c->send_off;
  if (c->proto == Proto::classic) return tx_.head();
  std::uint64_t lim = session_.credit_end(tx_.tail(), tx_.head());
  if (stopping_) lim = std::min(lim, c->send_off);
  return std::max(lim, c->send_off);
}

bool Link::write_some(Conn* c) {
  for (int round = 0; round < 16; ++round) {
    // Ring bytes are contiguous (the mirror); only borrowed payloads (try_forward) split them.
    constexpr int kMaxIov = 64;
    iovec iov[kMaxIov];
    int n_iov = 0;
    std::size_t lens[3] = {0, 0, 0};
    std::uint64_t data_end = write_limit(c);
    // Control frames may only go out between data frames: first finish the frame in progress.
    std::uint64_t cut = c->established ? session_.frame_end_at(c->send_off, tx_.tail()) : c->send_off;
    if (cut > c->send_off) lens[0] = tx_iov(iov, n_iov, kMaxIov - 1, c->send_off, cut);
    bool whole_frame = c->send_off + lens[0] >= cut;
    if (whole_frame && c->ctrl_off < c->ctrl.size()) {
      iov[n_iov] = {c->ctrl.data() + c->ctrl_off, c->ctrl.size() - c->ctrl_off};
      lens[1] = iov[n_iov++].iov_len;
    }
    std::uint64_t rest_from = std::max(cut, c->send_off);
    if (whole_frame && !stopping_ && data_end > rest_from) lens[2] = tx_iov(iov, n_iov, kMaxIov, rest_from, data_end);
    if (n_iov == 0) {
      if (!conn_flush_tls(c)) return false;
      if (completed_ && !c->shut_wr && c->established) {
        conn_shutdown(c);
        c->shut_wr = true;
      }
      return true;
    }
    ssize_t n = conn_send(c, iov, n_iov);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return false;
      int err = errno;
      if (err == ECONNRESET || err == EPIPE) {
        // The peer may have said why before it went (an ERROR frame still unread here):
        // read that first, it is the better reason.
        read_some(c);
        if (c != active_.get() || closed_) return false;
      }
      connection_lost(io_failure(c, "send to", err));
      return false;
    }
    std::size_t left = static_cast<std::size_t>(n);
    stats_.wire_bytes_out += left;
    c->last_tx = Clock::now();
    std::size_t a = std::min(left, lens[0]);
    c->send_off += a;
    left -= a;
    std::size_t b = std::min(left, lens[1]);
    c->ctrl_off += b;
    left -= b;
    c->send_off += left;
    if (c->ctrl_off == c->ctrl.size()) {
      c->ctrl.clear();
      c->ctrl_off = 0;
    }
    if (c->send_off > max_sent_off_) max_sent_off_ = c->send_off;
    if (wire_proto_ == Proto::classic) release_written_classic();
    if (static_cast<std::size_t>(n) < lens[0] + lens[1] + lens[2]) return false;
    if (c->tls && c->tls->has_pending_output()) return false;
  }
  return true;
}

bool Link::has_output(const Conn* c) const {
  if (c->ctrl_off < c->ctrl.size()) return true;
  if (c->tls && c->tls->has_pending_output()) return true;
  if (!c->established) return false;
  return c->send_off < write_limit(c) || c->send_off < session_.frame_end_at(c->send_off, tx_.tail());
}

void Link::update_interest() {
  if (active_ && active_->watch) {
    Conn* a = active_.get();
    // Native: the peer's credit bounds what it sends, so we always read (its acks must get
    // through). Classic has no credit: stop reading while waiting messages hold the room.
    bool can_read = rx_.free_space() > 0 && !rx_blocked_;
    if (a->rx_paused && can_read) a->last_rx = Clock::now();  // paused time is not silence
    a->rx_paused = !can_read;
    short ev = (can_read ? POLLIN : 0) | (has_output(a) ? POLLOUT : 0);
    reactor_.set_events(a->watch, ev);
  }
  reschedule();
}

// ---------------------------------------------------------------- receiving

void Link::read_some(Conn* c) {
  if (!c->early.empty()) {
    drain_early(c);
    if (c != active_.get()) return;
  }
  for (int round = 0; round < 16; ++round) {
    auto w = rx_.writable();
    if (w.empty() || rx_blocked_) break;
    // Moderate reads keep what was just copied in cache for the checksum that follows.
    if (w.size() > kReadSlice) w = w.first(kReadSlice);
    ssize_t n = conn_recv(c, w.data(), w.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      connection_lost(io_failure(c, "receive from", errno));
      return;
    }
    if (n == 0) {
      if (wire_proto_ == Proto::classic && c->established && parse_off_ == rx_.head() && !peer_finished_ &&
          opt_.close_ends && classic_frames_ > 0) {
        // --close-ends: an orderly close at a frame boundary, after at least one valid frame,
        // is the end of the stream (the seed never ends a stream on purpose, hence opt-in).
        rx_queue_.push_back(RxMessage{parse_off_, parse_off_, parse_off_, 0, 0, 0, true});
        if (obs_) obs_->on_readable();
      }
      connection_lost(make_error(ErrorKind::disconnected, "receive from " + c->peer.to_string(),
                                 "peer closed the connection"),
                      /*orderly=*/true);
      return;
    }
    if (!c->heard && !c->tls && c->dialer && is_tls_alert(w.first(static_cast<std::size_t>(n)))) {
      fail(listener_needs_keys(c->peer.to_string()));  // a TLS alert where a frame should be
      return;
    }
    c->heard = true;
    rx_.produce(static_cast<std::size_t>(n));
    stats_.wire_bytes_in += static_cast<std::uint64_t>(n);
    c->last_rx = Clock::now();
    std::size_t before = rx_queue_.size();
    if (c->proto == Proto::classic) parse_classic(c);
    else parse_native(c);
    if (c != active_.get()) return;
    if (rx_queue_.size() != before) {
      protocol_failure_streak_ = 0;  // progress
      if (obs_) obs_->on_readable();
      if (c != active_.get() || closed_) return;  // the observer may close or abort
    }
    if (static_cast<std::size_t>(n) < w.size()) break;
  }
  update_interest();
}

// The unparsed tail needs `needed` contiguous bytes from parse_off_. Native: the peer's credit
// guarantees the room behind held messages, so running short is a protocol fault; a frame
// larger than the ring comes only when nothing is held, and the ring grows for it. Classic: stop
// reading until the application consumes. False when the connection was dropped.
bool Link::make_rx_room(std::size_t needed) {
  std::size_t required = static_cast<std::size_t>(parse_off_ - rx_.tail()) + needed;
  if (required <= rx_.capacity()) {
    rx_blocked_ = false;
    return true;
  }
  if (!rx_queue_.empty()) {
    if (wire_proto_ == Proto::native) {
      connection_lost(protocol_error("credit-exceeded", "from " + peer_name(),
                                     "the peer sent more than the window it was given"));
      return false;
    }
    rx_blocked_ = true;
    return true;
  }
  auto g = rx_.grown(std::max(needed, rx_.capacity() * 2));
  if (!g) {
    connection_lost(g.error());
    return false;
  }
  rx_ = std::move(*g);
  rx_blocked_ = false;
  return true;
}

void Link::parse_native(Conn* c) {
  // Frames are parsed at `r`; kept DATA/END frames are moved down to `w` over the control
  // frames (ACK, keepalive) that arrived between them, so that only data the credit allows
  // ever occupies the ring behind messages the application has not taken yet.
  std::uint64_t r = parse_off_, w = parse_off_;
  auto settle = [&] {
    std::uint64_t head = rx_.head();
    if (w != r) {
      std::size_t len = static_cast<std::size_t>(head - r);
      if (len) {
        std::uint8_t* dst = rx_.at(w);
        std::memmove(dst, dst + (r - w), len);
      }
      rx_.truncate_to(w + len);
    }
    parse_off_ = w;
    if (rx_queue_.empty()) rx_.release_to(parse_off_);
  };
  std::string ctx;
  auto context = [&]() -> const std::string& {
    if (ctx.empty()) ctx = "from " + c->peer.to_string();
    return ctx;
  };
  while (true) {
    std::span<const std::uint8_t> buf(rx_.at(r), static_cast<std::size_t>(rx_.head() - r));
    auto d = frame::decode(buf, opt_.max_message, integrity());
    if (d.status == frame::Status::need_more) {
      settle();
      make_rx_room(d.needed);
      return;
    }
    if (d.status == frame::Status::bad) {
      settle();
      connection_lost(frame::decode_error(d, opt_.max_message, context()));
      return;
    }
    const auto& h = d.header;
    auto payload_span = buf.subspan(frame::kHeaderSize, h.length);
    if (!c->established) {
      r += d.frame_size;
      w = r;
      if (h.type == frame::Type::error) {
        Error e = frame::decode_error_payload(payload_span, "peer " + c->peer.to_string(),
                                              h.flags & frame::kFlagRetryable);
        settle();
        if (e.id == "session-lost") {
          e.detail = std::string("session lost: the ") + (opt_.receive_only ? "sender" : "receiver") +
                     " restarted (" + e.detail + ")";
        }
        if (is_retryable(e)) connection_lost(e);
        else fail(e);
        return;
      }
      if (h.type != frame::Type::hello) {
        settle();
        connection_lost(protocol_error("bad-hello", context(), "expected a handshake"));
        return;
      }
      auto hello = frame::decode_hello(payload_span);
      settle();
      if (!hello) {
        Error e = hello.error();
        e.context = context();
        if (is_retryable(e)) connection_lost(e);
        else fail(e);
        return;
      }
      promote(nullptr, Proto::native, &*hello);
      if (c != active_.get() || closed_) return;
      r = w = parse_off_;
      continue;
    }
    if (!c->confirmed) {
      c->confirmed = true;
      session_.confirm();
    }
    std::uint64_t start = r;
    r += d.frame_size;
    bool keep = false;
    switch (h.type) {
      case frame::Type::data:
      case frame::Type::end:
        switch (session_.on_frame(h.seq)) {
          case Session::Rx::accept: {
            keep = true;
            if (w != start) std::memmove(rx_.at(w), rx_.at(w) + (start - w), d.frame_size);
            bool end = h.type == frame::Type::end;
            rx_queue_.push_back(RxMessage{w, w + frame::kHeaderSize, w + d.frame_size, h.length, h.timestamp, h.seq, end});
            w += d.frame_size;
            break;
          }
          case Session::Rx::gap:
            w = start;  // nothing of it is kept
            r = start;
            settle();
            connection_lost(protocol_error("seq-gap", context(),
                                           "expected seq " + std::to_string(session_.recv_next()) + ", got " +
                                               std::to_string(h.seq)));
            return;
          case Session::Rx::duplicate:
            break;  // from before the resume point; already held
        }
        break;
      case frame::Type::ack: {
        auto win = frame::decode_ack(payload_span);
        if (!win) {
          r = start;
          settle();
          Error e = win.error();
          e.context = context();
          connection_lost(e);
          return;
        }
        auto a = session_.on_ack(h.seq, *win);
        if (!a) {
          r = start;
          settle();
          Error e = a.error();
          e.context = context();
          connection_lost(e);
          return;
        }
        if (!apply_ack(std::move(a), context())) return;
        break;
      }
      case frame::Type::keepalive:
        break;
      case frame::Type::hello:
        r = start;
        settle();
        connection_lost(protocol_error("bad-hello", context(), "handshake in the middle of a session"));
        return;
      case frame::Type::error: {
        Error e = frame::decode_error_payload(payload_span, "peer " + c->peer.to_string(),
                                              h.flags & frame::kFlagRetryable);
        r = start;
        settle();
        // A peer that stopped on purpose after taking everything we sent (dlrecv --count):
        // that is our success, not a disconnection.
        if (e.id == "peer-stopped" && end_requested_ && session_.data_acked() && !opt_.receive_only) {
          completed_ = true;
          if (obs_) obs_->on_event(LinkEvent::completed, "", nullptr);
          close();
          if (obs_) obs_->on_event(LinkEvent::closed, "", nullptr);
          return;
        }
        if (is_retryable(e)) connection_lost(e);
        else session_over(e);
        return;
      }
    }
    if (!keep && rx_queue_.empty()) w = r;  // nothing held: no need to move anything down
  }
}

void Link::parse_classic(Conn* c) {
  while (true) {
    std::span<const std::uint8_t> buf(rx_.at(parse_off_), static_cast<std::size_t>(rx_.head() - parse_off_));
    if (buf.empty()) return;
    auto d = classic::decode(buf, opt_.max_message);
    switch (d.status) {
      case classic::DecodeStatus::need_more:
        make_rx_room(d.needed);
        return;
      case classic::DecodeStatus::too_large: {
        Error e = protocol_error("too-large", "from " + c->peer.to_string(),
                                 "classic frame of " + std::to_string(d.payload_size) +
                                     " bytes exceeds the limit of " + std::to_string(opt_.max_message) +
                                     " bytes (--max-message)");
        connection_lost(e);
        return;
      }
      case classic::DecodeStatus::garbage:
        stats_.garbage_bytes += d.consumed;
        if (!classic_garbage_run_) {
          classic_garbage_run_ = true;
          stats_.protocol_errors++;
          Error e = protocol_error(std::string("classic-") + d.reason, "from " + c->peer.to_string(),
                                   "skipping bytes to the next frame header");
          if (obs_) obs_->on_event(LinkEvent::warning, "resynchronising", &e);
        }
        parse_off_ += d.consumed;
        break;
      case classic::DecodeStatus::frame: {
        classic_garbage_run_ = false;
        classic_frames_++;
        std::uint64_t start = parse_off_;
        parse_off_ += d.consumed;
        if (d.payload_size == 0) break;  // keepalive or empty: link activity only, as the seed
        if (d.timestamp < 0) {
          stats_.negative_ts++;
          if (stats_.negative_ts == 1 && obs_) {
            Error e = protocol_error("negative-timestamp", "from " + c->peer.to_string(),
                                     opt_.drop_negative_ts
                                         ? "dropping frames with a negative timestamp (--drop-negative-ts)"
                                         : "delivering frames with a negative timestamp (the seed drops them)");
            obs_->on_event(LinkEvent::warning, "negative timestamp", &e);
          }
          if (opt_.drop_negative_ts) {
            stats_.negative_ts_dropped++;
            break;
          }
        }
        rx_queue_.push_back(RxMessage{start, start + d.payload_offset, parse_off_,
                                      static_cast<std::uint32_t>(d.payload_size), d.timestamp, 0, false});
        break;
      }
    }
    if (rx_queue_.empty()) rx_.release_to(parse_off_);
  }
}

// The peer's END is taken in as soon as every message before it is consumed, whether the
// application then peeks again or not: a reader that peeks a batch and consumes it must not
// leave the sender waiting for the END's acknowledgement.
void Link::take_peer_end() {
  while (!rx_queue_.empty() && rx_queue_.front().end) {
    RxMessage m = rx_queue_.front();
    rx_queue_.pop_front();
    if (m.seq) session_.peer_end_delivered(m.seq);
    peer_finished_ = true;
    rx_.release_to(rx_queue_.empty() ? parse_off_ : rx_queue_.front().frame_start);
    reactor_.request_pass();  // the END's ACK and completion are for the next flush
  }
}

bool Link::peek(Message& out, std::size_t index) {
  take_peer_end();
  if (index >= rx_queue_.size() || rx_queue_[index].end) return false;
  const RxMessage& m = rx_queue_[index];
  out.payload = {rx_.at(m.payload), m.size};
  out.timestamp = m.timestamp;
  out.seq = m.seq;
  out.checksum.reset();
  if (m.seq && integrity() == frame::Integrity::checksum) out.checksum = get_u64(rx_.at(m.frame_start) + 24);
  return true;
}

void Link::consume(std::size_t count) {
  for (; count > 0 && !rx_queue_.empty() && !rx_queue_.front().end; --count) {
    const RxMessage& m = rx_queue_.front();
    if (m.seq) session_.delivered(m.seq);
    stats_.bytes_received += m.size;
    stats_.messages_received++;
    rx_queue_.pop_front();
  }
  rx_.release_to(rx_queue_.empty() ? parse_off_ : rx_queue_.front().frame_start);
  take_peer_end();
  // An ACK (and new credit) is due: make sure a flush runs before the next blocking wait, even
  // when ours already ran in this pass (a relay consumes from inside another link's flush).
  if (session_.ack_due()) reactor_.request_pass();
  if (rx_blocked_ && rx_queue_.empty()) {
    // Room may have appeared for the frame we were waiting on; let parsing decide again.
    rx_blocked_ = false;
    if (active_ && active_->established) {
      if (active_->proto == Proto::classic) parse_classic(active_.get());
      else parse_native(active_.get());
    }
  }
  if (active_) update_interest();
}

std::size_t Link::available() const {
  std::size_t n = rx_queue_.size();
  if (n && rx_queue_.back().end) --n;
  return n;
}

void Link::check_completion() {
  if (completed_) return;
  bool done = wire_proto_ == Proto::classic ? finished() && (!opt_.await_peer_end || peer_finished_)
                                             : end_requested_ && session_.complete();
  if (!done) return;
  if (wire_proto_ == Proto::native && !ready()) return;  // the last ack must reach the peer
  if (wire_proto_ == Proto::classic && !ever_connected_) return;
  completed_ = true;
  if (obs_) obs_->on_event(LinkEvent::completed, "", nullptr);
  if (!active_) {
    // Classic peer already gone (its close was the end of the stream).
    if (opt_.keep_open && opt_.listen) {
      reset_session();
      reschedule();
    } else {
      close();
      if (obs_) obs_->on_event(LinkEvent::closed, "", nullptr);
    }
    return;
  }
  linger_until_ = Clock::now() + std::chrono::milliseconds(opt_.linger_ms);
  write_some(active_.get());  // shuts down our sending side once flushed
  reschedule();
}

}  // namespace dl
