#include "lib/link/listener.h"

#include <poll.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "lib/base/random.h"
#include "lib/link/link.h"
#include "lib/link/session.h"

namespace dl {
namespace {

constexpr std::size_t kMaxCandidates = 64;     // connections still in their protocol handshake
constexpr std::size_t kMaxTlsHandshakes = 64;  // strangers in their TLS handshake at once

// Where a connection comes from, for fairness among newcomers: the IPv4 address, an IPv6 /64
// (what one host usually holds), or one key for all unix peers.
std::array<std::uint8_t, 9> source_of(const SocketAddress& a) {
  std::array<std::uint8_t, 9> k{};  // the address bytes, then which kind they are
  if (a.family() == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(a.get());
    std::memcpy(k.data(), &in->sin_addr, 4);
    k[8] = 4;
  } else if (a.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.get());
    const std::uint8_t* b = in6->sin6_addr.s6_addr;
    bool v4 = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
    std::memcpy(k.data(), v4 ? b + 12 : b, v4 ? 4 : 8);
    k[8] = v4 ? 4 : 6;
  }
  return k;
}

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
  for (auto& p : tls_pending_) reactor_.unwatch(p->watch);
  for (Link* l : std::vector<Link*>(links_)) l->listener_gone(*this);
}

Status SessionListener::start() {
  if (acceptor_) return ok_status();
  if (opt_.tls.any()) {
    auto cfg = TlsConfig::load(opt_.tls, TlsRole::listener);
    if (!cfg) return cfg.error();
    tls_ = std::move(*cfg);
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
    // while it lasts. Said once until a connection is accepted again.
    if (exhaustion_reported_) return;
    exhaustion_reported_ = true;
    if (obs_) obs_->on_event(LinkEvent::warning, "accept", &e);
    return;
  }
  Error why = make_error(ErrorKind::auth, "connection from " + peer->to_string(),
                         "not allowed (--allow " + opt_.allow.to_string() + ")");
  if (obs_) obs_->on_event(LinkEvent::rejected, peer->to_string(), &why);
}

void SessionListener::on_accepted(Accepted a) {
  exhaustion_reported_ = false;
  auto p = std::make_unique<Pending>();
  p->n.fd = std::move(a.fd);
  p->n.peer = a.peer;
  p->n.opened = Clock::now();
  if (tls_) start_tls(std::move(p));
  else begin_detection(std::move(p));
}

// Who makes room when a list is full: the oldest connection of the source that holds the most,
// so a stranger flooding from one address evicts its own connections and not a real dialer's
// slow handshake (64 strangers in a row from one address would otherwise push out everybody).
SessionListener::Pending* SessionListener::evictee(const PendingList& list) {
  // Sources sorted, then each run counted: a list is at most 64 long, and under a flood this
  // runs once per newcomer.
  std::vector<std::pair<std::array<std::uint8_t, 9>, std::size_t>> by_source;
  by_source.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i) by_source.emplace_back(source_of(list[i]->n.peer), i);
  std::sort(by_source.begin(), by_source.end());
  std::size_t victim = 0, most = 0;
  for (std::size_t run = 0; run < by_source.size();) {
    std::size_t end = run;
    while (end < by_source.size() && by_source[end].first == by_source[run].first) ++end;
    if (end - run > most) {
      most = end - run;
      victim = by_source[run].second;  // the smallest index of the run: its oldest
    }
    run = end;
  }
  return list.empty() ? nullptr : list[victim].get();
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

void SessionListener::start_tls(std::unique_ptr<Pending> p) {
  if (tls_pending_.size() >= kMaxTlsHandshakes) {
    // Strangers that never finish a handshake must not lock the real peer out: the oldest of
    // the source that holds the most makes room.
    auto alive = alive_;
    tls_failed(evictee(tls_pending_),
               make_error(ErrorKind::timeout, "TLS", "dropped: too many connections in their handshake"));
    if (!*alive) return;
  }
  p->n.tls = std::make_unique<TlsSession>(tls_, p->n.fd.get(), p->n.peer.to_string(), std::string());
  p->n.opened = Clock::now();
  tls_pending_.push_back(std::move(p));
  Pending* q = tls_pending_.back().get();
  q->watch = reactor_.watch(q->n.fd.get(), POLLIN | POLLOUT, [this, q](short) { on_tls_io(q); });
  reschedule();
  on_tls_io(q);
}

void SessionListener::on_tls_io(Pending* p) {
  auto it = std::find_if(tls_pending_.begin(), tls_pending_.end(), [p](auto& q) { return q.get() == p; });
  if (it == tls_pending_.end()) return;
  TlsIo r = p->n.tls->handshake();
  if (r == TlsIo::want_read || r == TlsIo::want_write) {
    reactor_.set_events(p->watch, r == TlsIo::want_read ? POLLIN : POLLOUT);
    return;
  }
  if (r != TlsIo::ok) {
    tls_failed(p, p->n.tls->error());
    return;
  }
  begin_detection(take(tls_pending_, p));
}

// Refused, and reported (one line each: the tool rate-limits them).
void SessionListener::tls_failed(Pending* p, Error e) {
  auto doomed = take(tls_pending_, p);
  if (!doomed) return;
  if (e.id == "tls-not-tls") {
    // A dialer without keys: answer in TLS terms, which our own plain dialers recognise and
    // report as "the listener speaks TLS".
    send_tls_refusal(doomed->n.fd.get());
  }
  e.context = "TLS";  // the report names the peer already
  auto alive = alive_;
  if (obs_) obs_->on_event(LinkEvent::rejected, doomed->n.peer.to_string(), &e);
  if (*alive) reschedule();
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
  consider(tls_pending_);
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
  for (std::size_t i = 0; i < tls_pending_.size();) {
    Pending* p = tls_pending_[i].get();
    if (!expired(*p)) {
      ++i;
      continue;
    }
    tls_failed(p, make_error(ErrorKind::timeout, "TLS handshake with " + p->n.peer.to_string(),
                             "not completed within " + std::to_string(opt_.handshake_ms) + " ms"));
    if (!*alive) return;
  }
  reschedule();
}

}  // namespace dl
