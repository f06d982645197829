#include "lib/link/link.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "lib/codec/classic_codec.h"
#include "lib/codec/frame.h"
#include "lib/codec/message_io.h"

namespace dl {
namespace {

constexpr int kHandshakeMs = 5000;
constexpr std::size_t kCandidateBytes = 4096;
constexpr std::size_t kMinUsefulReserve = 64 * 1024;
constexpr std::size_t kInitialRx = 4u << 20;
constexpr int kMaxProtocolFailureStreak = 8;
constexpr std::size_t kReadSlice = 256 * 1024;
constexpr std::size_t kMaxTlsHandshakes = 64;  // strangers in their TLS handshake at once

std::uint64_t random_u64() {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^
                                          static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())};
  return rng();
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
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
      timer_(reactor, [this] { on_timer(); }),
      backoff_(opt_.backoff) {
  opt_.max_message = std::min(opt_.max_message, frame::kHardMaxPayload);
  session_hi_ = random_u64();
  session_lo_ = random_u64();
  session_known_ = !opt_.listen;  // dialers name the session; listeners adopt it
  if (opt_.receive_only) finish();
}

Link::~Link() {
  close();
}

std::size_t Link::frame_overhead() const {
  return wire_proto_ == Proto::classic ? classic::kOverhead : frame::kHeaderSize;
}

std::string Link::peer() const { return active_ ? active_->peer.to_string() : std::string(); }

bool Link::ready() const { return active_ && active_->established; }

Status Link::start() {
  if (started_) return ok_status();
  started_ = true;
  if (opt_.proto == Proto::classic) wire_proto_ = Proto::classic;
  if (opt_.proto == Proto::automatic && !opt_.listen) {
    return make_error(ErrorKind::usage, "--proto auto",
                      "only a listener can detect its peer's protocol; a dialer needs native or classic");
  }
  if (opt_.tls.any()) {
    auto cfg = TlsConfig::load(opt_.tls, opt_.listen ? TlsRole::listener : TlsRole::dialer);
    if (!cfg) return cfg.error();
    tls_ = std::move(*cfg);
  }
  auto tx = ByteRing::create(opt_.window);
  if (!tx) return tx.error();
  tx_ = std::move(*tx);
  auto rx = ByteRing::create(std::min<std::size_t>(kInitialRx, opt_.max_message + 64 * 1024));
  if (!rx) return rx.error();
  rx_ = std::move(*rx);
  flush_hook_ = reactor_.before_poll([this] { flush(); });
  auto now = Clock::now();
  if (opt_.wait_s >= 0) give_up_at_ = deadline_after(now, opt_.wait_s);  // saturates: inf is never
  if (opt_.listen) {
    auto l = listen_on(opt_.endpoint);
    if (!l) return l.error();
    listener_ = std::move(*l);
    local_ = listener_->local;
    listen_watch_ = reactor_.watch(listener_->fd.get(), POLLIN, [this](short ev) { on_accept(ev); });
    if (obs_) obs_->on_event(LinkEvent::listening, local_.to_string(), nullptr);
  } else {
    auto a = resolve(opt_.endpoint, false);
    if (!a) return a.error();
    addresses_ = std::move(*a);
    start_dial_round();
  }
  reschedule();
  return ok_status();
}

// ---------------------------------------------------------------- connection management

void Link::start_dial_round() {
  retry_at_.reset();
  next_address_ = 0;
  try_next_address();
}

void Link::try_next_address() {
  while (next_address_ < addresses_.size()) {
    const SocketAddress& a = addresses_[next_address_++];
    auto fd = start_connect(a);
    if (!fd) {
      last_error_ = fd.error();
      continue;
    }
    dialing_ = std::make_unique<Conn>();
    dialing_->fd = std::move(*fd);
    dialing_->peer = a;
    dialing_->dialer = true;
    dialing_->opened = Clock::now();
    dialing_->watch =
        reactor_.watch(dialing_->fd.get(), POLLOUT, [this](short ev) { on_connect_ready(ev); });
    reschedule();
    return;
  }
  schedule_retry();
}

void Link::on_connect_ready(short) {
  std::unique_ptr<Conn> c = std::move(dialing_);
  reactor_.unwatch(c->watch);
  if (auto st = finish_connect(c->fd.get(), c->peer); !st) {
    last_error_ = st.error();
    try_next_address();
    return;
  }
  if (tls_) {
    start_tls(std::move(c));
    return;
  }
  connected(std::move(c));
}

void Link::connected(std::unique_ptr<Conn> c) {
  if (opt_.proto == Proto::classic) {
    promote(std::move(c), Proto::classic, nullptr);
    return;
  }
  // Native: say HELLO and wait for the listener's; the connection counts once it answers.
  c->proto = Proto::native;
  c->last_rx = c->last_tx = Clock::now();
  rx_.truncate_to(parse_off_);
  active_ = std::move(c);
  active_->watch = reactor_.watch(active_->fd.get(), POLLIN,
                                  [this, p = active_.get()](short ev) { on_conn_io(p, ev); });
  queue_hello();
  reschedule();
}

void Link::on_accept(short) {
  for (int i = 0; i < 8; ++i) {
    SocketAddress peer;
    auto fd = accept_one(listener_->fd.get(), &peer);
    if (!fd) {
      // Out of descriptors (EMFILE) and the like: the listener stays readable, so stop
      // watching it for a moment instead of spinning.
      last_error_ = fd.error();
      reactor_.set_events(listen_watch_, 0);
      accept_paused_until_ = Clock::now() + std::chrono::milliseconds(100);
      reschedule();
      return;
    }
    if (!fd->valid()) return;
    auto c = std::make_unique<Conn>();
    c->fd = std::move(*fd);
    c->peer = peer;
    c->opened = c->last_rx = c->last_tx = Clock::now();
    if (tls_) start_tls(std::move(c));
    else accepted(std::move(c));
    if (closed_) return;
  }
  reschedule();
}

void Link::accepted(std::unique_ptr<Conn> c) {
  c->opened = Clock::now();  // protocol detection starts now (after TLS)
  if (opt_.proto == Proto::classic) {
    promote(std::move(c), Proto::classic, nullptr);
    return;
  }
  if (candidate_) {
    Error e = make_error(ErrorKind::disconnected, "connection from " + candidate_->peer.to_string(),
                         "replaced by a newer connection before its handshake");
    if (obs_) obs_->on_event(LinkEvent::rejected, candidate_->peer.to_string(), &e);
    reactor_.unwatch(candidate_->watch);
  }
  candidate_ = std::move(c);
  candidate_->watch = reactor_.watch(candidate_->fd.get(), POLLIN,
                                     [this, p = candidate_.get()](short ev) { on_conn_io(p, ev); });
  // Bytes that came with the TLS handshake wait inside TLS, where poll() cannot see them.
  if (candidate_->tls && candidate_->tls->has_buffered_input()) on_conn_io(candidate_.get(), POLLIN);
  reschedule();
}

// ---------------------------------------------------------------- TLS (keys)

void Link::start_tls(std::unique_ptr<Conn> c) {
  if (tls_pending_.size() >= kMaxTlsHandshakes) {
    // Strangers that never finish a handshake must not lock the real peer out: the oldest of
    // them makes room.
    Conn* oldest = tls_pending_.front().get();
    tls_handshake_failed(oldest, make_error(ErrorKind::timeout, "TLS",
                                            "dropped: too many connections in their handshake"));
  }
  std::string host = opt_.listen || opt_.endpoint.kind != Endpoint::Kind::tcp ? std::string() : opt_.endpoint.host;
  c->tls = std::make_unique<TlsSession>(tls_, c->fd.get(), c->peer.to_string(), host);
  c->opened = Clock::now();
  tls_pending_.push_back(std::move(c));
  Conn* p = tls_pending_.back().get();
  p->watch = reactor_.watch(p->fd.get(), POLLIN | POLLOUT, [this, p](short) { on_tls_io(p); });
  on_tls_io(p);
}

void Link::on_tls_io(Conn* c) {
  auto it = std::find_if(tls_pending_.begin(), tls_pending_.end(), [c](auto& p) { return p.get() == c; });
  if (it == tls_pending_.end()) return;
  TlsIo r = c->tls->handshake();
  if (r == TlsIo::want_read || r == TlsIo::want_write) {
    reactor_.set_events(c->watch, r == TlsIo::want_read ? POLLIN : POLLOUT);
    return;
  }
  if (r != TlsIo::ok) {
    tls_handshake_failed(c, c->tls->error());
    return;
  }
  std::unique_ptr<Conn> done = std::move(*it);
  tls_pending_.erase(it);
  reactor_.unwatch(done->watch);
  done->watch = 0;
  if (done->dialer) {
    connected(std::move(done));
  } else {
    accepted(std::move(done));
  }
  reschedule();
}

// A listener refuses the newcomer (reported, one line each: the tool rate-limits them); a
// dialer treats it like a failed connect, and gives up at once when retrying cannot help.
void Link::tls_handshake_failed(Conn* c, Error e) {
  auto it = std::find_if(tls_pending_.begin(), tls_pending_.end(), [c](auto& p) { return p.get() == c; });
  if (it == tls_pending_.end()) return;
  std::unique_ptr<Conn> doomed = std::move(*it);
  tls_pending_.erase(it);
  reactor_.unwatch(doomed->watch);
  if (!doomed->dialer) {
    if (e.id == "tls-not-tls") {
      // A dialer without keys: answer with a TLS alert record (fatal, protocol_version), which
      // our own plain dialers recognise and report as "the listener speaks TLS".
      static const std::uint8_t kAlert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
      [[maybe_unused]] auto n = ::send(doomed->fd.get(), kAlert, sizeof kAlert, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    e.context = "TLS";  // the report names the peer already
    if (obs_) obs_->on_event(LinkEvent::rejected, doomed->peer.to_string(), &e);
    reschedule();
    return;
  }
  if (e.kind == ErrorKind::auth && tls_peer_known_) e.final = false;
  last_error_ = e;
  if (e.kind == ErrorKind::auth || e.kind == ErrorKind::protocol) {
    stats_.protocol_errors++;
    if (++protocol_failure_streak_ >= kMaxProtocolFailureStreak) e.final = true;
  }
  if (!is_retryable(e)) {
    fail(e);
    return;
  }
  try_next_address();
}

void Link::expire_tls_handshakes(Clock::time_point now) {
  for (std::size_t i = 0; i < tls_pending_.size();) {
    Conn* c = tls_pending_[i].get();
    if (now < c->opened + std::chrono::milliseconds(kHandshakeMs)) {
      ++i;
      continue;
    }
    tls_handshake_failed(c, make_error(ErrorKind::timeout, "TLS handshake with " + c->peer.to_string(),
                                       "not completed within " + std::to_string(kHandshakeMs) + " ms"));
    if (closed_) return;
  }
}

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
    if (e.kind == ErrorKind::auth && tls_peer_known_ && !opt_.listen) e.final = false;
    return e;
  }
  return errno_error(ErrorKind::disconnected, what + " " + c->peer.to_string(), err);
}

ssize_t Link::conn_recv(Conn* c, void* buf, std::size_t n) {
  if (!c->tls) return ::recv(c->fd.get(), buf, n, MSG_DONTWAIT);
  TlsResult r = c->tls->read({static_cast<std::uint8_t*>(buf), n});
  // The listener accepted us once it sent anything (TLS 1.3 sends a ticket after checking our
  // certificate): from then on a failed handshake with it is likelier damage than a refusal.
  if (c->dialer && !tls_peer_known_ && c->tls->peer_accepted()) tls_peer_known_ = true;
  switch (r.status) {
    case TlsIo::ok: return static_cast<ssize_t>(r.bytes);
    case TlsIo::eof: return 0;
    case TlsIo::want_read:
    case TlsIo::want_write: errno = EAGAIN; return -1;
    case TlsIo::failed: break;
  }
  c->io_error = c->tls->error();
  errno = EPROTO;
  return -1;
}

ssize_t Link::conn_send(Conn* c, const iovec* iov, int n_iov) {
  if (!c->tls) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<std::size_t>(n_iov);
    return ::sendmsg(c->fd.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  TlsResult r = c->tls->writev({iov, static_cast<std::size_t>(n_iov)});
  if (r.status == TlsIo::failed) {
    c->io_error = c->tls->error();
    errno = EPROTO;
    return -1;
  }
  if (r.bytes == 0 && n_iov > 0) {
    errno = EAGAIN;
    return -1;
  }
  return static_cast<ssize_t>(r.bytes);
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
  if (c == candidate_.get()) {
    // A candidate is read in small steps; with TLS the rest of what arrived waits inside TLS,
    // where poll() cannot see it.
    for (int i = 0; i < 64; ++i) {
      handle_candidate_input(c);
      if (c != candidate_.get() || !c->tls || !c->tls->has_buffered_input()) break;
    }
    return;
  }
  if (c != active_.get()) return;
  if (revents & (POLLIN | POLLHUP | POLLERR)) read_some(c);
  if (c != active_.get()) return;  // dropped while reading
  if (revents & POLLOUT) write_some(c);
}

void Link::handle_candidate_input(Conn* c) {
  std::uint8_t buf[kCandidateBytes];
  // A native dialer sends exactly one HELLO and waits for ours: read no further than that.
  std::size_t want = frame::kHeaderSize + frame::kHelloSize - c->early.size();
  if (!c->early.empty() && c->early[0] == classic::kStartByte) want = 0;
  if (c->early.empty()) want = 1;
  if (want == 0 || want > sizeof buf) want = sizeof buf - c->early.size();
  ssize_t n = conn_recv(c, buf, want);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    candidate_.reset();  // closed before saying anything: a port probe, nothing to report
    reactor_.unwatch(c->watch);
    reschedule();
    return;
  }
  stats_.wire_bytes_in += static_cast<std::uint64_t>(n);
  c->early.insert(c->early.end(), buf, buf + n);
  c->last_rx = Clock::now();
  auto reject = [&](const Error& e) {
    stats_.protocol_errors++;
    if (obs_) obs_->on_event(LinkEvent::rejected, c->peer.to_string(), &e);
    auto doomed = std::move(candidate_);
    reactor_.unwatch(doomed->watch);
    send_error_and_close(doomed.get(), e.id, e.message());
    reschedule();
  };
  std::string ctx = "from " + c->peer.to_string();
  std::uint8_t first = c->early[0];
  if (first == classic::kStartByte && opt_.proto == Proto::automatic) {
    if (native_session_in_progress()) {
      reject(protocol_error("session-busy", ctx, "a native session is in progress"));
      return;
    }
    auto taken = std::move(candidate_);
    reactor_.unwatch(taken->watch);
    promote(std::move(taken), Proto::classic, nullptr);
    return;
  }
  auto d = frame::decode(c->early, opt_.max_message);
  if (d.status == frame::Status::bad) {
    reject(frame::decode_error(d, opt_.max_message, ctx));
    return;
  }
  if (d.status == frame::Status::need_more) {
    if (d.needed > frame::kHeaderSize + frame::kHelloSize) {
      reject(protocol_error("bad-hello", ctx, "first frame is not a handshake"));
    }
    return;
  }
  if (d.header.type != frame::Type::hello) {
    reject(protocol_error("bad-hello", ctx, "first frame is not a handshake"));
    return;
  }
  auto hello = frame::decode_hello(
      std::span<const std::uint8_t>(c->early).subspan(frame::kHeaderSize, d.header.length));
  if (!hello) {
    Error e = hello.error();
    e.context = ctx;
    reject(e);
    return;
  }
  // Session admission: adopt a new session, resume ours, or refuse a stranger mid-session.
  bool same = session_known_ && hello->session_hi == session_hi_ && hello->session_lo == session_lo_;
  if (session_known_ && !same) {
    if (completed_ && opt_.keep_open) {
      reset_session();
    } else if (ever_connected_) {
      reject(protocol_error("session-busy", ctx, "another session is in progress here"));
      return;
    }
  }
  auto taken = std::move(candidate_);
  reactor_.unwatch(taken->watch);
  promote(std::move(taken), Proto::native, &*hello);
}

void Link::promote(std::unique_ptr<Conn> c, Proto proto, const frame::Hello* hello) {
  Conn* conn = c ? c.get() : active_.get();
  bool resumed = false;
  std::uint64_t resend_from = 0;
  if (proto == Proto::native && hello) {
    if (!conn->dialer) {
      session_hi_ = hello->session_hi;
      session_lo_ = hello->session_lo;
    }
    // The peer holds everything below recv_next. It cannot have lost what it acknowledged.
    if (hello->recv_next < acked_seq_ + 1) {
      Error e = protocol_error("session-lost", "peer " + conn->peer.to_string(),
                               "the peer restarted and lost the session (it expects seq " +
                                   std::to_string(hello->recv_next) + ", acknowledged up to " +
                                   std::to_string(acked_seq_) + ")",
                               /*retryable=*/false);
      send_error_and_close(conn, e.id, e.detail);
      fail(e);
      return;
    }
    if (hello->recv_next > next_seq_) {
      Error e = protocol_error("bad-hello", "peer " + conn->peer.to_string(),
                               "peer claims seq " + std::to_string(hello->recv_next) +
                                   " but only " + std::to_string(next_seq_ - 1) + " were sent");
      if (c) {
        send_error_and_close(conn, e.id, e.detail);
        if (obs_) obs_->on_event(LinkEvent::rejected, conn->peer.to_string(), &e);
      } else {
        connection_lost(e);
      }
      return;
    }
    // Messages queued before we knew the peer's limit: refuse now rather than have the peer
    // drop the connection over them again and again.
    for (std::size_t i = 0; i < tx_index_.size(); ++i) {
      std::uint64_t size = tx_index_[i].end - tx_frame_start(i) - frame::kHeaderSize;
      if (size > hello->max_message) {
        Error e = make_error(ErrorKind::too_large, "message",
                             "message of " + std::to_string(size) + " bytes exceeds the peer's limit of " +
                                 std::to_string(hello->max_message) + " bytes (its --max-message)");
        e.id = "too-large-for-peer";
        e.final = true;
        if (c) send_error_and_close(conn, e.id, e.detail);
        fail(e);
        return;
      }
    }
    resumed = ever_connected_ && session_known_;
    session_known_ = true;
    peer_max_message_ = hello->max_message;
    peer_timeout_ms_ = static_cast<int>(hello->timeout_ms);
    // Only what the peer delivered is acknowledged; what it merely holds (parsed, not yet
    // written out) is not resent, but stays in the ring until a real ACK.
    on_ack(hello->delivered);
    resend_from = tx_.tail();
    for (std::size_t i = 0; i < tx_index_.size() && tx_index_[i].seq < hello->recv_next; ++i) {
      resend_from = tx_index_[i].end;
    }
  }
  if (c && ever_connected_ && proto != wire_proto_ && !completed_) {
    Error e = protocol_error("session-busy", "from " + conn->peer.to_string(),
                             "messages for a " + std::string(wire_proto_ == Proto::classic ? "classic" : "native") +
                                 " peer are still waiting");
    if (proto == Proto::native) send_error_and_close(conn, e.id, e.detail);
    if (obs_) obs_->on_event(LinkEvent::rejected, conn->peer.to_string(), &e);
    return;
  }
  if (c) {
    if (active_) {
      Error e = make_error(ErrorKind::disconnected, "connection to " + active_->peer.to_string(),
                           "replaced by a new connection");
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
  if (proto == Proto::native) {
    a->early.clear();  // it held the HELLO
    if (!a->dialer) queue_hello();
    a->send_off = resend_from;
    if (max_sent_off_ > resend_from) stats_.resent_bytes += max_sent_off_ - resend_from;
  } else {
    // Classic: what was fully written is gone; a frame cut in the middle goes out again whole.
    a->send_off = tx_.tail();
  }
  if (ever_connected_) stats_.reconnects++;
  stats_.connections++;
  ever_connected_ = true;
  give_up_at_.reset();
  retry_at_.reset();
  last_error_.reset();
  backoff_.reset();
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
  if (!opt_.listen && !tls_pending_.empty()) return true;  // a dialer's TLS handshake
  return dialing_ || candidate_ || (active_ && !active_->established);
}

void Link::drop_conn(Conn* c, const Error& why, bool report) {
  if (!c) return;
  reactor_.unwatch(c->watch);
  c->watch = 0;
  if (report && obs_) obs_->on_event(LinkEvent::disconnected, c->peer.to_string(), &why);
  c->fd.reset();
}

void Link::connection_lost(const Error& why) {
  bool was_established = active_ && active_->established;
  if (active_) {
    drop_conn(active_.get(), why, was_established && !completed_);
    active_.reset();
  }
  rx_.truncate_to(parse_off_);
  rx_blocked_ = false;  // the partial frame that needed the room is gone
  last_error_ = why;
  if (why.kind == ErrorKind::protocol || why.kind == ErrorKind::auth) {
    stats_.protocol_errors++;
    // A peer that breaks the protocol again and again with no progress in between is not a
    // flaky link: give up instead of reconnecting for ever.
    if (++protocol_failure_streak_ >= kMaxProtocolFailureStreak && !closed_) {
      Error e = why;
      e.detail += " (" + std::to_string(protocol_failure_streak_) + " times in a row without progress)";
      fail(e);
      return;
    }
  }
  if (closed_) return;
  if (completed_) {
    // The peer closed after everything was acknowledged: that is the normal end.
    linger_until_.reset();
    if (opt_.keep_open && opt_.listen) {
      reset_session();
      reschedule();
      return;
    }
    closed_ = true;
    if (obs_) obs_->on_event(LinkEvent::closed, "", nullptr);
    close();
    return;
  }
  if (!is_retryable(why)) {
    fail(why);
    return;
  }
  auto now = Clock::now();
  // The reconnect window opens when an established connection drops; a failed handshake
  // keeps whatever deadline was running (--wait for a first connect).
  if (was_established) {
    if (opt_.reconnect_s >= 0) {
      give_up_at_ = deadline_after(now, opt_.reconnect_s);  // saturates: inf is never
    } else {
      give_up_at_.reset();
    }
  }
  if (!opt_.listen) schedule_retry();
  reschedule();
}

void Link::schedule_retry() {
  auto delay = backoff_.next();
  auto now = Clock::now();
  if (give_up_at_ && now + delay > *give_up_at_) {
    // Out of patience: report the last real reason (refused, unreachable, timeout ...).
    Error e = last_error_ ? *last_error_
                          : make_error(ErrorKind::connect, "connect " + opt_.endpoint.to_string());
    if (ever_connected_) {
      Error d = make_error(ErrorKind::disconnected, "peer " + opt_.endpoint.to_string(),
                           "gone for " + seconds_text(opt_.reconnect_s) + " s; last error: " +
                               e.message());
      fail(d);
    } else {
      fail(e);
    }
    return;
  }
  retry_at_ = now + delay;
  if (obs_) {
    obs_->on_event(LinkEvent::retrying, std::to_string(delay.count()) + " ms",
                   last_error_ ? &*last_error_ : nullptr);
  }
  reschedule();
}

void Link::fail(const Error& e) {
  if (closed_) return;
  failure_ = e;
  closed_ = true;
  close();
  if (obs_) obs_->on_event(LinkEvent::closed, "", &e);
}

void Link::close() {
  closed_ = true;
  reactor_.wake();  // a close inside a before-poll hook must not leave the loop asleep
  timer_.cancel();
  if (flush_hook_) reactor_.remove_before_poll(flush_hook_);
  flush_hook_ = 0;
  for (auto* c : {&active_, &candidate_, &dialing_}) {
    if (*c) {
      reactor_.unwatch((*c)->watch);
      c->reset();
    }
  }
  for (auto& c : tls_pending_) reactor_.unwatch(c->watch);
  tls_pending_.clear();
  if (listen_watch_) reactor_.unwatch(listen_watch_);
  listen_watch_ = 0;
  listener_.reset();
}

void Link::abandon(std::string_view reason) {
  if (active_ && active_->established && wire_proto_ == Proto::native && !completed_) {
    send_error_and_close(active_.get(), "peer-stopped", reason);
  }
  close();
}

void Link::reset_session() {
  session_known_ = false;
  session_hi_ = random_u64();
  session_lo_ = random_u64();
  tx_index_.clear();
  tx_.release_to(tx_.head());
  next_seq_ = 1;
  acked_seq_ = 0;
  end_requested_ = end_queued_ = false;
  end_seq_ = 0;
  max_sent_off_ = tx_.head();
  rx_queue_.clear();
  rx_.truncate_to(parse_off_);
  rx_.release_to(parse_off_);
  recv_next_ = 1;
  delivered_seq_ = acked_sent_ = 0;
  peer_finished_ = completed_ = false;
  ever_connected_ = false;
  linger_until_.reset();
  give_up_at_.reset();
  if (opt_.receive_only) finish();
}

// ---------------------------------------------------------------- timers

void Link::reschedule() {
  if (closed_) return;
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  consider(retry_at_);
  consider(accept_paused_until_);
  if (!attempt_in_progress() && !ready()) consider(give_up_at_);
  consider(linger_until_);
  if (candidate_) {
    int ms = opt_.proto == Proto::automatic && candidate_->early.empty() ? opt_.detect_ms
                                                                          : kHandshakeMs;
    consider(candidate_->opened + std::chrono::milliseconds(ms));
  }
  if (dialing_) consider(dialing_->opened + std::chrono::milliseconds(std::max(kHandshakeMs, opt_.timeout_ms)));
  for (auto& c : tls_pending_) consider(c->opened + std::chrono::milliseconds(kHandshakeMs));
  if (active_) {
    Conn* a = active_.get();
    if (!a->established) {
      consider(a->opened + std::chrono::milliseconds(std::max(kHandshakeMs, opt_.timeout_ms)));
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
  int t = 0;
  for (int v : {opt_.timeout_ms, peer_timeout_ms_}) {
    if (v > 0 && (t == 0 || v < t)) t = v;
  }
  if (t == 0 && wire_proto_ == Proto::classic) t = 3000;  // the classic peer's timeout is unknown
  return t > 0 ? std::max(t / 3, 20) : 0;
}

void Link::on_timer() {
  if (closed_) return;
  auto now = Clock::now();
  if (accept_paused_until_ && now >= *accept_paused_until_) {
    accept_paused_until_.reset();
    if (listen_watch_) reactor_.set_events(listen_watch_, POLLIN);
  }
  if (linger_until_ && now >= *linger_until_) {
    linger_until_.reset();
    connection_lost(make_error(ErrorKind::disconnected, "linger", "peer did not close"));
    return;
  }
  if (retry_at_ && now >= *retry_at_ && !dialing_ && !active_) {
    start_dial_round();
    if (closed_) return;
  }
  if (candidate_) {
    int ms = opt_.proto == Proto::automatic && candidate_->early.empty() ? opt_.detect_ms
                                                                          : kHandshakeMs;
    if (now >= candidate_->opened + std::chrono::milliseconds(ms)) {
      auto c = std::move(candidate_);
      reactor_.unwatch(c->watch);
      if (opt_.proto == Proto::automatic && c->early.empty() && !native_session_in_progress()) {
        // Silence: a classic client sends nothing until it has data. Serve it as classic.
        promote(std::move(c), Proto::classic, nullptr);
      } else {
        Error e = make_error(ErrorKind::timeout, "handshake from " + c->peer.to_string(),
                             "no handshake within " + std::to_string(ms) + " ms");
        if (obs_) obs_->on_event(LinkEvent::rejected, c->peer.to_string(), &e);
      }
      if (closed_) return;
    }
  }
  expire_tls_handshakes(now);
  if (closed_) return;
  if (dialing_ && now >= dialing_->opened + std::chrono::milliseconds(std::max(kHandshakeMs, opt_.timeout_ms))) {
    last_error_ = make_error(ErrorKind::timeout, "connect " + dialing_->peer.to_string(),
                             "connection attempt timed out");
    reactor_.unwatch(dialing_->watch);
    dialing_.reset();
    try_next_address();
    if (closed_) return;
  }
  if (active_) {
    Conn* a = active_.get();
    if (!a->established) {
      if (now >= a->opened + std::chrono::milliseconds(std::max(kHandshakeMs, opt_.timeout_ms))) {
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
  if (give_up_at_ && now >= *give_up_at_ && !ready()) {
    if (!ever_connected_ && opt_.listen) {
      fail(make_error(ErrorKind::timeout, "listen " + local_.to_string(),
                      "no peer connected within " + seconds_text(opt_.wait_s) + " s"));
      return;
    }
    if (!attempt_in_progress()) {
      retry_at_.reset();
      Error e = last_error_ ? *last_error_
                            : make_error(ErrorKind::disconnected, "peer", "did not come back");
      if (ever_connected_) {
        fail(make_error(ErrorKind::disconnected, "peer " + (opt_.listen ? local_.to_string() : opt_.endpoint.to_string()),
                        "gone for " + seconds_text(opt_.reconnect_s) + " s; last error: " + e.message()));
      } else {
        fail(e);
      }
      return;
    }
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
  bool peer_known = wire_proto_ == Proto::native && ever_connected_;
  return peer_known ? std::min(opt_.max_message, peer_max_message_) : opt_.max_message;
}

std::optional<std::uint32_t> Link::known_send_limit() const {
  if (!proto_known()) return std::nullopt;
  if (wire_proto_ == Proto::native && !ever_connected_) return std::nullopt;
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
  std::size_t total;
  std::uint64_t seq = 0;
  if (wire_proto_ == Proto::classic) {
    classic::encode_header(start, n, timestamp);
    classic::encode_footer(start + classic::kHeaderSize + n);
    total = classic::kOverhead + n;
  } else {
    seq = next_seq_++;
    frame::encode(start, frame::Type::data, seq, timestamp,
                  {start + frame::kHeaderSize, n});
    total = frame::kHeaderSize + n;
  }
  tx_.produce(total);
  tx_index_.push_back(TxFrame{seq, tx_.head()});
  stats_.bytes_sent += n;
  stats_.messages_sent++;
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
    if (error) *error = make_error(ErrorKind::cancelled, "send", "link is closed");
    return false;
  }
  if (!proto_known()) return false;
  std::size_t over = frame_overhead();
  if (auto st = ensure_tx_room(over + payload.size()); !st) {
    if (error) *error = st.error();
    return false;
  }
  if (tx_.free_space() < over + payload.size()) return false;
  std::size_t header = wire_proto_ == Proto::classic ? classic::kHeaderSize : frame::kHeaderSize;
  if (!payload.empty()) std::memcpy(tx_.at(tx_.head() + header), payload.data(), payload.size());
  if (payload.empty()) {
    // Classic cannot carry an empty message (the seed drops it as a keepalive); native can.
    if (wire_proto_ == Proto::classic) return true;
    std::uint8_t* start = tx_.at(tx_.head());
    std::uint64_t seq = next_seq_++;
    frame::encode(start, frame::Type::data, seq, timestamp, {});
    tx_.produce(frame::kHeaderSize);
    tx_index_.push_back(TxFrame{seq, tx_.head()});
    stats_.messages_sent++;
    return true;
  }
  commit(payload.size(), timestamp);
  return true;
}

void Link::finish() { end_requested_ = true; }

bool Link::finished() const {
  if (!end_requested_) return false;
  if (wire_proto_ == Proto::classic) return tx_index_.empty();
  return end_queued_ && acked_seq_ >= end_seq_;
}

void Link::queue_end_if_room() {
  if (!end_requested_ || end_queued_ || wire_proto_ == Proto::classic || !proto_known()) return;
  if (!ensure_tx_room(frame::kHeaderSize) || tx_.free_space() < frame::kHeaderSize) return;
  std::uint8_t* start = tx_.at(tx_.head());
  end_seq_ = next_seq_++;
  frame::encode(start, frame::Type::end, end_seq_, unix_now(), {});
  tx_.produce(frame::kHeaderSize);
  tx_index_.push_back(TxFrame{end_seq_, tx_.head()});
  end_queued_ = true;
}

void Link::queue_control(frame::Type type, std::uint64_t seq, std::span<const std::uint8_t> payload) {
  if (!active_) return;
  std::size_t old = active_->ctrl.size();
  active_->ctrl.resize(old + frame::kHeaderSize + payload.size());
  auto* p = reinterpret_cast<std::uint8_t*>(active_->ctrl.data()) + old;
  if (!payload.empty()) std::memcpy(p + frame::kHeaderSize, payload.data(), payload.size());
  frame::encode(p, type, seq, unix_now(), payload);
}

void Link::abort_connection() {
  if (active_) {
    connection_lost(make_error(ErrorKind::disconnected, "connection to " + active_->peer.to_string(),
                               "aborted on request"));
  }
}

void Link::queue_hello() {
  frame::Hello h;
  h.session_hi = session_hi_;
  h.session_lo = session_lo_;
  h.recv_next = recv_next_;
  h.delivered = delivered_seq_;
  h.max_message = opt_.max_message;
  h.timeout_ms = static_cast<std::uint32_t>(std::max(0, opt_.timeout_ms));
  std::uint8_t payload[frame::kHelloSize];
  frame::encode_hello(payload, h);
  queue_control(frame::Type::hello, 0, payload);
}

void Link::send_keepalive() {
  if (!ready()) return;
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

void Link::send_error_and_close(Conn* c, std::string_view id, std::string_view text) {
  if (!c || !c->fd.valid()) return;
  std::string payload = frame::encode_error_payload(id, text);
  std::vector<std::uint8_t> buf(frame::kHeaderSize + payload.size());
  std::memcpy(buf.data() + frame::kHeaderSize, payload.data(), payload.size());
  frame::encode(buf.data(), frame::Type::error, 0, unix_now(),
                {buf.data() + frame::kHeaderSize, payload.size()});
  // Best effort: the connection is being refused, its peer may not read it.
  if (c->tls) {
    if (c->tls->established()) {
      c->tls->write(buf);
      c->tls->shutdown();
    }
    return;
  }
  [[maybe_unused]] auto n = ::send(c->fd.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void Link::on_ack(std::uint64_t seq) {
  if (seq > acked_seq_) acked_seq_ = std::min(seq, next_seq_ - 1);
  bool released = false;
  while (!tx_index_.empty() && tx_index_.front().seq <= acked_seq_) {
    tx_.release_to(tx_index_.front().end);
    tx_index_.pop_front();
    released = true;
  }
  if (active_ && active_->send_off < tx_.tail()) active_->send_off = tx_.tail();
  if (released) {
    protocol_failure_streak_ = 0;
    notify_writable();
  }
}

void Link::release_written_classic() {
  if (!active_) return;
  bool released = false;
  while (!tx_index_.empty() && tx_index_.front().end <= active_->send_off) {
    tx_.release_to(tx_index_.front().end);
    tx_index_.pop_front();
    released = true;
  }
  if (released) notify_writable();
}

void Link::notify_writable() { writable_pending_ = true; }

std::uint64_t Link::messages_settled() const {
  if (wire_proto_ == Proto::classic) return messages_committed() - tx_index_.size();
  return std::min(acked_seq_, messages_committed());
}

std::uint64_t Link::tx_frame_start(std::size_t index) const {
  return index == 0 ? tx_.tail() : tx_index_[index - 1].end;
}

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
    if (ready() && wire_proto_ == Proto::native && delivered_seq_ > acked_sent_) {
      queue_control(frame::Type::ack, delivered_seq_, {});
      acked_sent_ = delivered_seq_;
      stats_.acks_sent++;
    }
    if (active_) write_some(active_.get());
    if (closed_) return;
    if (!writable_pending_) break;
  }
  check_completion();
  if (closed_) return;
  update_interest();
  if (writable_pending_) reactor_.wake();  // more room than one flush could use: come back
}

bool Link::write_some(Conn* c) {
  for (int round = 0; round < 16; ++round) {
    iovec iov[3];
    int n_iov = 0;
    std::size_t lens[3] = {0, 0, 0};
    std::uint64_t data_end = c->established ? tx_.head() : c->send_off;
    // Control frames may only go out between data frames.
    std::uint64_t cut = c->send_off;
    if (c->send_off < data_end) {
      auto it = std::upper_bound(tx_index_.begin(), tx_index_.end(), c->send_off,
                                 [](std::uint64_t off, const TxFrame& f) { return off < f.end; });
      std::size_t idx = static_cast<std::size_t>(it - tx_index_.begin());
      if (it != tx_index_.end() && tx_frame_start(idx) != c->send_off) cut = it->end;
    }
    if (cut > c->send_off) {
      iov[n_iov] = {tx_.at(c->send_off), static_cast<std::size_t>(cut - c->send_off)};
      lens[0] = iov[n_iov++].iov_len;
    }
    if (c->ctrl_off < c->ctrl.size()) {
      iov[n_iov] = {c->ctrl.data() + c->ctrl_off, c->ctrl.size() - c->ctrl_off};
      lens[1] = iov[n_iov++].iov_len;
    }
    if (data_end > cut) {
      // Never more than the ring holds contiguously (capacity), which the mirror guarantees.
      iov[n_iov] = {tx_.at(cut), static_cast<std::size_t>(data_end - cut)};
      lens[2] = iov[n_iov++].iov_len;
    }
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
      connection_lost(io_failure(c, "send to", errno));
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
  return c->established && c->send_off < tx_.head();
}

void Link::update_interest() {
  if (active_ && active_->watch) {
    Conn* a = active_.get();
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
      if (wire_proto_ == Proto::classic && c->established && parse_off_ == rx_.head() && !peer_finished_) {
        // Classic has no end-of-stream frame: an orderly close at a frame boundary is the end.
        rx_queue_.push_back(RxMessage{parse_off_, parse_off_, parse_off_, 0, 0, 0, true});
        if (obs_) obs_->on_readable();
      }
      connection_lost(make_error(ErrorKind::disconnected, "receive from " + c->peer.to_string(),
                                 "peer closed the connection"));
      return;
    }
    if (!c->heard && !c->tls && c->dialer && w[0] == 0x15) {
      // A TLS alert where the peer's first frame should be: the listener has keys.
      Error e = make_error(ErrorKind::auth, "peer " + c->peer.to_string(),
                           "the listener speaks TLS: it needs keys (--psk, or --cert with --ca/--pin; see dl-security(7))");
      e.final = true;
      fail(e);
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

// The unparsed tail needs `needed` contiguous bytes from parse_off_. If the ring cannot hold
// that behind the messages still waiting for the application, stop reading until they are
// consumed; then grow (bounded by max_message).
void Link::make_rx_room(std::size_t needed) {
  std::size_t required = static_cast<std::size_t>(parse_off_ - rx_.tail()) + needed;
  if (required <= rx_.capacity()) {
    rx_blocked_ = false;
    return;
  }
  if (!rx_queue_.empty()) {
    rx_blocked_ = true;
    return;
  }
  auto g = rx_.grown(std::max(needed, rx_.capacity() * 2));
  if (!g) {
    connection_lost(g.error());
    return;
  }
  rx_ = std::move(*g);
  rx_blocked_ = false;
}

void Link::parse_native(Conn* c) {
  while (true) {
    std::span<const std::uint8_t> buf(rx_.at(parse_off_), static_cast<std::size_t>(rx_.head() - parse_off_));
    auto d = frame::decode(buf, opt_.max_message);
    if (d.status == frame::Status::need_more) {
      make_rx_room(d.needed);
      return;
    }
    std::string ctx = "from " + c->peer.to_string();
    if (d.status == frame::Status::bad) {
      connection_lost(frame::decode_error(d, opt_.max_message, ctx));
      return;
    }
    const auto& h = d.header;
    std::uint64_t start = parse_off_;
    std::uint64_t payload = start + frame::kHeaderSize;
    parse_off_ += d.frame_size;
    if (!c->established) {
      if (h.type == frame::Type::error) {
        Error e = frame::decode_error_payload(buf.subspan(frame::kHeaderSize, h.length), ctx);
        if (is_retryable(e)) connection_lost(e);
        else fail(e);
        return;
      }
      if (h.type != frame::Type::hello) {
        connection_lost(protocol_error("bad-hello", ctx, "expected a handshake"));
        return;
      }
      auto hello = frame::decode_hello(buf.subspan(frame::kHeaderSize, h.length));
      if (hello && (hello->session_hi != session_hi_ || hello->session_lo != session_lo_)) {
        hello = protocol_error("bad-hello", ctx, "listener answered with another session id");
      }
      if (!hello) {
        Error e = hello.error();
        e.context = ctx;
        if (is_retryable(e)) connection_lost(e);
        else fail(e);
        return;
      }
      if (rx_queue_.empty()) rx_.release_to(parse_off_);
      promote(nullptr, Proto::native, &*hello);
      if (c != active_.get() || closed_) return;
      continue;
    }
    switch (h.type) {
      case frame::Type::data:
      case frame::Type::end:
        if (h.seq == recv_next_) {
          bool end = h.type == frame::Type::end;
          rx_queue_.push_back(RxMessage{start, payload, parse_off_, h.length, h.timestamp, h.seq, end});
          recv_next_++;
        } else if (h.seq > recv_next_) {
          connection_lost(protocol_error("seq-gap", ctx,
                                         "expected seq " + std::to_string(recv_next_) + ", got " +
                                             std::to_string(h.seq)));
          return;
        }  // else: a duplicate from before the resume point; already held
        break;
      case frame::Type::ack:
        if (h.seq >= next_seq_) {
          connection_lost(protocol_error("bad-ack", ctx, "acknowledges seq " + std::to_string(h.seq) +
                                                             " which was never sent"));
          return;
        }
        on_ack(h.seq);
        break;
      case frame::Type::keepalive:
        break;
      case frame::Type::hello:
        connection_lost(protocol_error("bad-hello", ctx, "handshake in the middle of a session"));
        return;
      case frame::Type::error: {
        Error e = frame::decode_error_payload(buf.subspan(frame::kHeaderSize, h.length), ctx);
        if (is_retryable(e)) connection_lost(e);
        else fail(e);
        return;
      }
    }
    if (rx_queue_.empty()) rx_.release_to(parse_off_);
  }
}

void Link::parse_classic(Conn* c) {
  while (true) {
    std::span<const std::uint8_t> buf(rx_.at(parse_off_), static_cast<std::size_t>(rx_.head() - parse_off_));
    if (buf.empty()) return;
    auto d = classic::decode(buf, opt_.max_message);
    std::string ctx = "from " + c->peer.to_string();
    switch (d.status) {
      case classic::DecodeStatus::need_more:
        make_rx_room(d.needed);
        return;
      case classic::DecodeStatus::too_large: {
        Error e = protocol_error("too-large", ctx,
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
          Error e = protocol_error(std::string("classic-") + d.reason, ctx,
                                   "skipping bytes to the next frame header");
          if (obs_) obs_->on_event(LinkEvent::warning, "resynchronising", &e);
        }
        parse_off_ += d.consumed;
        break;
      case classic::DecodeStatus::frame: {
        classic_garbage_run_ = false;
        std::uint64_t start = parse_off_;
        parse_off_ += d.consumed;
        if (d.payload_size == 0) break;  // keepalive or empty: link activity only, as the seed
        if (d.timestamp < 0) {
          stats_.negative_ts++;
          if (stats_.negative_ts == 1 && obs_) {
            Error e = protocol_error("negative-timestamp", ctx,
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

bool Link::peek(Message& out, std::size_t index) {
  while (!rx_queue_.empty() && rx_queue_.front().end) {
    RxMessage m = rx_queue_.front();
    rx_queue_.pop_front();
    if (m.seq) delivered_seq_ = m.seq;
    peer_finished_ = true;
    rx_.release_to(rx_queue_.empty() ? parse_off_ : rx_queue_.front().frame_start);
  }
  if (index >= rx_queue_.size() || rx_queue_[index].end) return false;
  const RxMessage& m = rx_queue_[index];
  out.payload = {rx_.at(m.payload), m.size};
  out.timestamp = m.timestamp;
  out.seq = m.seq;
  return true;
}

void Link::consume(std::size_t count) {
  for (; count > 0 && !rx_queue_.empty() && !rx_queue_.front().end; --count) {
    const RxMessage& m = rx_queue_.front();
    if (m.seq) delivered_seq_ = m.seq;
    stats_.bytes_received += m.size;
    stats_.messages_received++;
    rx_queue_.pop_front();
  }
  rx_.release_to(rx_queue_.empty() ? parse_off_ : rx_queue_.front().frame_start);
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
  bool sent_all = finished();
  bool got_all = peer_finished_ && acked_sent_ >= delivered_seq_;
  if (wire_proto_ == Proto::classic && !opt_.await_peer_end) got_all = true;
  if (!(sent_all && got_all)) return;
  if (wire_proto_ == Proto::native && !ready()) return;  // the last ack must reach the peer
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
