#include "lib/net/acceptor.h"

#include <sys/socket.h>

namespace dl {

Acceptor::Acceptor(Reactor& reactor, Listener listener, AcceptorOptions options, OnAccept on_accept,
                   OnEvent on_event)
    : reactor_(reactor),
      listener_(std::move(listener)),
      opt_(std::move(options)),
      on_accept_(std::move(on_accept)),
      on_event_(std::move(on_event)),
      resume_timer_(reactor, [this] {
        exhausted_ = false;
        update();
      }) {
  watch_ = reactor_.watch(listener_.fd.get(), POLLIN, [this](short) { on_ready(); });
}

Result<std::unique_ptr<Acceptor>> Acceptor::listen(Reactor& reactor, const Endpoint& endpoint,
                                                   AcceptorOptions options, OnAccept on_accept,
                                                   OnEvent on_event) {
  auto l = listen_on(endpoint);
  if (!l) return l.error();
  return std::make_unique<Acceptor>(reactor, std::move(*l), std::move(options), std::move(on_accept),
                                    std::move(on_event));
}

Acceptor::~Acceptor() {
  *alive_ = false;
  reactor_.unwatch(watch_);
}

void Acceptor::update() {
  reactor_.set_events(watch_, paused_by_owner_ || exhausted_ ? 0 : POLLIN);
}

void Acceptor::pause() {
  paused_by_owner_ = true;
  update();
}

void Acceptor::resume() {
  paused_by_owner_ = false;
  update();
}

void Acceptor::on_ready() {
  auto alive = alive_;
  // `*alive` first: a callback may have destroyed us, members included.
  for (int i = 0; *alive && i < opt_.batch && !paused_by_owner_; ++i) {
    SocketAddress peer;
    auto fd = accept_one(listener_.fd.get(), &peer);
    if (!fd) {
      // Out of descriptors or memory: the listener stays readable, so stop watching it for a
      // moment instead of spinning; the backlog holds the clients meanwhile.
      exhausted_ = true;
      update();
      resume_timer_.arm(Clock::now() + opt_.pause_on_exhaustion);
      // Said once per shortage: it lasts as long as the descriptors are held, and a line
      // every retry would bury the log.
      if (!exhaustion_said_ && on_event_) {
        exhaustion_said_ = true;
        on_event_(fd.error(), nullptr);
      }
      return;
    }
    if (!fd->valid()) return;  // nothing more pending
    if (!opt_.allow.allows(peer)) {
      ++refused_;
      // A reset, not a polite close: the stranger learns at once, and we keep no TIME_WAIT.
      linger l{1, 0};
      ::setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      fd->reset();
      if (on_event_) {
        Error e = make_error(ErrorKind::auth, "connection from " + peer.to_string(),
                             "refused: not in the --allow list");
        on_event_(e, &peer);
      }
      continue;
    }
    ++accepted_;
    exhaustion_said_ = false;
    on_accept_(Accepted{std::move(*fd), peer});
  }
}

}  // namespace dl
