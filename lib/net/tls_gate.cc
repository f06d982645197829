#include "lib/net/tls_gate.h"

#include <fcntl.h>
#include <poll.h>

#include <algorithm>

#include "lib/net/evict.h"

namespace dl {

struct TlsGate::Pending {
  Fd fd;
  std::unique_ptr<TlsSession> tls;  // after fd: destroyed first
  SocketAddress peer;
  Reactor::Id watch = 0;
  Clock::time_point deadline;
};

TlsGate::TlsGate(Reactor& reactor, std::shared_ptr<TlsConfig> config, TlsGateOptions options, OnSecured on_secured,
                 OnRefused on_refused)
    : reactor_(reactor),
      config_(std::move(config)),
      options_(options),
      on_secured_(std::move(on_secured)),
      on_refused_(std::move(on_refused)),
      timer_(reactor, [this] { expire(); }) {}

TlsGate::~TlsGate() {
  *alive_ = false;
  for (auto& p : pending_) reactor_.unwatch(p->watch);
}

void TlsGate::admit(Fd fd, const SocketAddress& peer, std::string verify_host) {
  if (pending_.size() >= std::max<std::size_t>(1, options_.max_pending)) {
    // The oldest of the source that holds the most makes room (evict.h): a flood from one
    // address evicts itself, not the real peer's slow handshake.
    std::vector<SocketAddress> peers;
    for (auto& q : pending_) peers.push_back(q->peer);
    auto alive = alive_;
    refuse(pending_[evictee(peers)].get(),
           make_error(ErrorKind::timeout, "TLS", "dropped: too many connections in their handshake"));
    if (!*alive) return;
  }
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK);
  auto p = std::make_unique<Pending>();
  p->tls = std::make_unique<TlsSession>(config_, fd.get(), peer.to_string(), std::move(verify_host));
  p->fd = std::move(fd);
  p->peer = peer;
  p->deadline = Clock::now() + options_.timeout;
  Pending* raw = p.get();
  p->watch = reactor_.watch(p->fd.get(), POLLIN | POLLOUT, [this, raw](short) { step(raw); });
  pending_.push_back(std::move(p));
  rearm();
  step(raw);
}

void TlsGate::step(Pending* p) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [p](auto& x) { return x.get() == p; });
  if (it == pending_.end()) return;
  TlsIo r = p->tls->handshake();
  if (r == TlsIo::want_read || r == TlsIo::want_write) {
    reactor_.set_events(p->watch, r == TlsIo::want_read ? POLLIN : POLLOUT);
    return;
  }
  if (r != TlsIo::ok) {
    refuse(p, p->tls->error());
    return;
  }
  std::unique_ptr<Pending> done = std::move(*it);
  pending_.erase(it);
  reactor_.unwatch(done->watch);
  rearm();
  auto socket = std::make_unique<TlsSocket>(std::move(done->fd), std::move(done->tls));
  on_secured_(std::move(socket), done->peer);
}

void TlsGate::refuse(Pending* p, Error why) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [p](auto& x) { return x.get() == p; });
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> doomed = std::move(*it);
  pending_.erase(it);
  reactor_.unwatch(doomed->watch);
  // A dialer without keys: answer in TLS terms, which our plain dialers recognise.
  if (config_->role() == TlsRole::listener && why.id == "tls-not-tls") send_tls_refusal(doomed->fd.get());
  if (config_->role() == TlsRole::listener) why.context = "TLS";  // the listener's line names the peer
  SocketAddress peer = doomed->peer;
  doomed.reset();  // closed before anyone hears of it
  rearm();
  on_refused_(why, peer);
}

void TlsGate::rearm() {
  if (pending_.empty()) {
    timer_.cancel();
    return;
  }
  auto first = std::min_element(pending_.begin(), pending_.end(),
                                [](auto& a, auto& b) { return a->deadline < b->deadline; });
  timer_.arm((*first)->deadline);
}

void TlsGate::expire() {
  auto alive = alive_;
  auto now = Clock::now();
  for (std::size_t i = 0; i < pending_.size();) {
    Pending* p = pending_[i].get();
    if (p->deadline > now) {
      ++i;
      continue;
    }
    refuse(p, make_error(ErrorKind::timeout, "TLS handshake with " + p->peer.to_string(),
                         "not completed within " + std::to_string(options_.timeout.count()) + " ms"));
    if (!*alive) return;
    i = 0;
  }
}

}  // namespace dl
