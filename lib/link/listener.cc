#include "lib/link/listener.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "lib/base/random.h"
#include "lib/link/link.h"
#include "lib/link/session.h"
#include "lib/net/evict.h"

namespace dl {
namespace {

constexpr std::size_t kMaxCandidates = 64;     // connections still in their protocol handshake
constexpr std::size_t kMaxTlsHandshakes = 64;  // strangers in their TLS handshake at once

}  // namespace

ListenerOptions listener_options(const LinkOptions& link) {
  ListenerOptions o;
  o.endpoint = link.endpoint;
  o.proto = link.proto;
  o.max_message = std::min(link.max_message, frame::kHardMaxPayload);
  o.allow = link.allow;
  o.handshake_ms = link.handshake_ms;
  o.tls = link.tls;
  return o;
}

void send_refusal(int fd, TlsSession* tls, Proto proto, const Error& e) {
  if (fd < 0 || proto == Proto::classic) return;
  std::string text = e.detail.empty() ? e.message() : e.detail;
  std::string f = frame::encode_error_frame(e.id.empty() ? "refused" : e.id, text, is_retryable(e), unix_now());
  // Best effort: the connection is being refused, its peer may not read it.
  if (tls) {
    if (tls->established()) {
      tls->write({reinterpret_cast<const std::uint8_t*>(f.data()), f.size()});
      tls->shutdown();
    }
    return;
  }
  [[maybe_unused]] auto n = ::send(fd, f.data(), f.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

SessionListener::SessionListener(Reactor& reactor, ListenerOptions options, LinkObserver* observer,
                                 NewSession new_session)
    : reactor_(reactor),
      opt_(std::move(options)),
      obs_(observer),
      new_session_(std::move(new_session)),
      timer_(reactor, [this] { on_timer(); }) {
  incarnation_ = opt_.incarnation;
  while (incarnation_ == 0) incarnation_ = secure_random_u64();
}

SessionListener::~SessionListener() {
  *alive_ = false;
  for (auto& p : candidates_) reactor_.unwatch(p->watch);
  for (Link* l : std::vector<Link*>(links_)) l->listener_gone(*this);
}

Status SessionListener::start() {
  if (acceptor_) return ok_status();
  if (opt_.tls.any()) {
    auto cfg = TlsConfig::load(opt_.tls, TlsRole::listener);
    if (!cfg) return cfg.error();
    TlsGateOptions go;
    go.timeout = std::chrono::milliseconds(opt_.handshake_ms);
    go.max_pending = kMaxTlsHandshakes;
    // Refused strangers are reported one line each (the tool rate-limits them); a dialer
    // without keys got a TLS alert from the gate, which our plain dialers recognise.
    gate_ = std::make_unique<TlsGate>(
        reactor_, std::move(*cfg), go,
        [this](std::unique_ptr<TlsSocket> s, const SocketAddress& peer) { on_secured(std::move(s), peer); },
        [this](const Error& why, const SocketAddress& peer) {
          if (obs_) obs_->on_event(LinkEvent::rejected, peer.to_string(), &why);
        });
  }
  AcceptorOptions ao;
  ao.allow = opt_.allow;
  auto a = Acceptor::listen(
      reactor_, opt_.endpoint, std::move(ao), [this](Accepted c) { on_accepted(std::move(c)); },
      [this](const Error& e, const SocketAddress* peer) { on_accept_event(e, peer); });
  if (!a) return a.error();
  acceptor_ = std::move(*a);
  local_ = acceptor_->local();
  return ok_status();
}

void SessionListener::attach(Link& link) {
  if (std::find(links_.begin(), links_.end(), &link) == links_.end()) links_.push_back(&link);
}

void SessionListener::detach(Link& link) {
  links_.erase(std::remove(links_.begin(), links_.end(), &link), links_.end());
}

void SessionListener::on_accept_event(const Error& e, const SocketAddress* peer) {
  if (!peer) {
    // Out of descriptors: the Acceptor pauses a moment by itself and tries again, every 100 ms
    // while it lasts, and says so once until a connection is accepted again.
    if (obs_) obs_->on_event(LinkEvent::warning, "accept", &e);
    return;
  }
  Error why = make_error(ErrorKind::auth, "connection from " + peer->to_string(),
                         "not allowed (--allow " + opt_.allow.to_string() + ")");
  if (obs_) obs_->on_event(LinkEvent::rejected, peer->to_string(), &why);
}

void SessionListener::on_accepted(Accepted a) {
  if (gate_) {
    gate_->admit(std::move(a.fd), a.peer);  // on_secured() once its TLS handshake is done
    return;
  }
  auto p = std::make_unique<Pending>();
  p->n.fd = std::move(a.fd);
  p->n.peer = a.peer;
  begin_detection(std::move(p));
}

// Who makes room when a list is full: net's rule for newcomers (evict.h), as for TLS handshakes.
SessionListener::Pending* SessionListener::evictee(const PendingList& list) {
  if (list.empty()) return nullptr;
  std::vector<SocketAddress> peers;
  peers.reserve(list.size());
  for (auto& p : list) peers.push_back(p->n.peer);
  return list[dl::evictee(peers)].get();
}

std::unique_ptr<SessionListener::Pending> SessionListener::take(PendingList& list, Pending* p) {
  auto it = std::find_if(list.begin(), list.end(), [p](auto& q) { return q.get() == p; });
  if (it == list.end()) return nullptr;
  std::unique_ptr<Pending> taken = std::move(*it);
  list.erase(it);
  reactor_.unwatch(taken->watch);
  taken->watch = 0;
  return taken;
}

// ---------------------------------------------------------------- TLS (keys)

// Past the gate: TLS is up and the peer verified; its first bytes may already wait inside TLS.
void SessionListener::on_secured(std::unique_ptr<TlsSocket> socket, const SocketAddress& peer) {
  auto parts = socket->release();
  auto p = std::make_unique<Pending>();
  p->n.fd = std::move(parts.fd);
  p->n.tls = std::move(parts.tls);
  p->n.peer = peer;
  begin_detection(std::move(p));
}

// ---------------------------------------------------------------- protocol detection

void SessionListener::begin_detection(std::unique_ptr<Pending> p) {
  p->n.opened = Clock::now();  // the protocol's handshake time starts now (after TLS)
  if (opt_.proto == Proto::classic) {
    // A seed peer may never speak first (it sends nothing until it has data): with
    // --proto classic there is nothing to detect.
    p->n.proto = Proto::classic;
    hand_over(std::move(p));
    return;
  }
  if (candidates_.size() >= kMaxCandidates) {
    // Strangers that do not finish a handshake must not lock the real peer out: the oldest of
    // the source that holds the most makes room.
    std::unique_ptr<Pending> oldest = take(candidates_, evictee(candidates_));
    Error e = make_error(ErrorKind::timeout, "connection from " + oldest->n.peer.to_string(),
                         "dropped: too many connections still in their handshake");
    auto alive = alive_;
    refuse(std::move(oldest), e, false);
    if (!*alive) return;
  }
  candidates_.push_back(std::move(p));
  Pending* q = candidates_.back().get();
  q->watch = reactor_.watch(q->n.fd.get(), POLLIN, [this, q](short) { on_candidate_io(q); });
  reschedule();
  // Bytes that came with the TLS handshake wait inside TLS, where poll() cannot see them.
  if (q->n.tls && q->n.tls->has_buffered_input()) on_candidate_io(q);
}

void SessionListener::on_candidate_io(Pending* p) {
  // A candidate is read in small steps; with TLS the rest of what arrived waits inside TLS,
  // where poll() cannot see it.
  auto alive = alive_;
  for (int i = 0; i < 64; ++i) {
    bool tls = p->n.tls != nullptr;
    read_candidate(p);
    if (!*alive || !tls) return;
    bool still = std::any_of(candidates_.begin(), candidates_.end(), [p](auto& q) { return q.get() == p; });
    if (!still || !p->n.tls->has_buffered_input()) return;
  }
}

void SessionListener::read_candidate(Pending* p) {
  Newcomer& n = p->n;
  std::uint8_t buf[frame::kHeaderSize + frame::kHelloSize];
  std::size_t want = std::min(sizeof buf, newcomer_read_limit(n.early));
  ssize_t got;
  if (n.tls) {
    TlsResult r = n.tls->read({buf, want});
    if (r.status == TlsIo::want_read || r.status == TlsIo::want_write) return;
    got = r.status == TlsIo::ok ? static_cast<ssize_t>(r.bytes) : -1;
  } else {
    got = ::recv(n.fd.get(), buf, want, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  }
  if (got <= 0) {
    // Closed before completing a handshake: a port probe or a stranger, nothing to report.
    take(candidates_, p);
    reschedule();
    return;
  }
  n.early.insert(n.early.end(), buf, buf + got);
  std::string ctx = "from " + n.peer.to_string();
  if (n.early[0] == 0x16 && !n.tls) {
    // A TLS ClientHello: a dialer with keys, and we have none. Take in the rest of the hello
    // (so our close is not a reset that swallows the answer) and tell it in our own terms.
    std::uint8_t sink[4096];
    [[maybe_unused]] auto drained = ::recv(n.fd.get(), sink, sizeof sink, MSG_DONTWAIT);
    Error e = make_error(ErrorKind::auth, ctx, "a TLS handshake, but this listener has no keys (see dl-security(7))");
    e.id = "no-keys";
    e.final = true;
    refuse(take(candidates_, p), e, true);
    return;
  }
  Detection d = detect_newcomer(n.early, opt_.proto, opt_.max_message, ctx);
  switch (d.kind) {
    case Detection::need_more:
      return;
    case Detection::refuse:
      refuse(take(candidates_, p), d.why, d.tell);
      return;
    case Detection::classic:
      n.proto = Proto::classic;
      break;
    case Detection::native:
      n.proto = Proto::native;
      n.hello = d.hello;
      break;
  }
  hand_over(take(candidates_, p));
}

// ---------------------------------------------------------------- to a session

void SessionListener::hand_over(std::unique_ptr<Pending> p) {
  Newcomer& n = p->n;
  Link* target = nullptr;
  if (n.hello) {
    for (Link* l : links_) {
      if (l->session().same_id(*n.hello)) {
        target = l;
        break;
      }
    }
  }
  std::string ctx = "from " + n.peer.to_string();
  auto alive = alive_;
  if (!target && opt_.multi_session) {
    if (n.proto == Proto::native) {
      // A new session here must start from nothing: a HELLO that resumes a session nobody
      // serves (ended, expired, or of an earlier process) is refused, as Session::admit would.
      Session::Verdict v = Session::admit_new(*n.hello, incarnation_);
      if (v.action == Session::Admit::refuse) {
        Error e = v.why;
        e.context = ctx;
        refuse(std::move(p), e, true);
        return;
      }
    }
  }
  if (!target) {
    Error why = protocol_error("session-busy", ctx, "no session here can take this connection");
    target = new_session_ ? new_session_(n, &why) : nullptr;
    if (!*alive) return;
    if (!target) {
      if (why.context.empty()) why.context = ctx;
      refuse(std::move(p), why, n.proto == Proto::native);
      return;
    }
  }
  Status st = target->adopt(n);
  if (!*alive) return;
  if (!st) {
    refuse(std::move(p), st.error(), n.proto == Proto::native);
    return;
  }
  reschedule();
}

void SessionListener::refuse(std::unique_ptr<Pending> p, const Error& why, bool tell) {
  if (!p) return;
  if (tell) send_refusal(p->n.fd.get(), p->n.tls.get(), p->n.proto, why);
  auto alive = alive_;
  if (obs_) obs_->on_event(LinkEvent::rejected, p->n.peer.to_string(), &why);
  if (*alive) reschedule();
}

// ---------------------------------------------------------------- deadlines

void SessionListener::reschedule() {
  std::optional<Clock::time_point> next;
  auto consider = [&](const PendingList& list) {
    for (auto& p : list) {
      Clock::time_point t = p->n.opened + std::chrono::milliseconds(opt_.handshake_ms);
      if (!next || t < *next) next = t;
    }
  };
  consider(candidates_);
  if (next) timer_.arm(*next);
  else timer_.cancel();
}

void SessionListener::on_timer() {
  auto now = Clock::now();
  auto alive = alive_;
  auto expired = [&](const Pending& p) { return now >= p.n.opened + std::chrono::milliseconds(opt_.handshake_ms); };
  for (std::size_t i = 0; i < candidates_.size();) {
    Pending* p = candidates_[i].get();
    if (!expired(*p)) {
      ++i;
      continue;
    }
    std::string why = p->n.early.empty()
                          ? "said nothing for " + std::to_string(opt_.handshake_ms) +
                                " ms (a seed Datalink peer that never speaks first needs --proto classic)"
                          : "no complete handshake within " + std::to_string(opt_.handshake_ms) + " ms";
    Error e = make_error(ErrorKind::timeout, "connection from " + p->n.peer.to_string(), why);
    refuse(take(candidates_, p), e, false);
    if (!*alive) return;
  }
  reschedule();
}

}  // namespace dl
