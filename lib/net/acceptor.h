// Acceptor: takes connections from a listening socket and hands each out, with its peer
// address, through a callback. Peers outside the AllowList are closed (with a reset) before
// a byte is read and reported apart. When the process runs out of descriptors (EMFILE and
// the like) it stops accepting for a moment instead of spinning on a readable listener;
// pending clients wait in the kernel's backlog meanwhile.
//
// Not a protocol: what happens on an accepted connection is the owner's business.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/allow_list.h"
#include "lib/net/endpoint.h"
#include "lib/net/net.h"
#include "lib/net/reactor.h"

namespace dl {

struct AcceptorOptions {
  AllowList allow;  // empty: everybody
  int batch = 16;   // accepts per wake-up, so one busy listener cannot starve the rest
  Clock::duration pause_on_exhaustion = std::chrono::milliseconds(100);
};

struct Accepted {
  Fd fd;  // non-blocking, close-on-exec, tuned (tune_stream_socket)
  SocketAddress peer;
};

class Acceptor {
 public:
  using OnAccept = std::function<void(Accepted)>;
  // Something the owner may want to log: a refused peer (ErrorKind::auth, `peer` set), or
  // an accept failure that paused the acceptor (`peer` null; once per shortage, not per retry:
  // again only after a connection was accepted). Never fatal.
  using OnEvent = std::function<void(const Error& e, const SocketAddress* peer)>;

  // Takes the listener (see listen_on) and starts accepting at once. Callbacks may destroy
  // the Acceptor.
  Acceptor(Reactor& reactor, Listener listener, AcceptorOptions options, OnAccept on_accept,
           OnEvent on_event = {});
  // listen_on(endpoint) and an Acceptor on it. Blocks while resolving a host name.
  // Errors: those of listen_on.
  static Result<std::unique_ptr<Acceptor>> listen(Reactor& reactor, const Endpoint& endpoint,
                                                  AcceptorOptions options, OnAccept on_accept,
                                                  OnEvent on_event = {});
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  const SocketAddress& local() const { return listener_.local; }
  // Stops taking connections (they queue in the backlog) until resume().
  void pause();
  void resume();
  std::uint64_t accepted() const { return accepted_; }
  std::uint64_t refused() const { return refused_; }

 private:
  void on_ready();
  void update();

  Reactor& reactor_;
  Listener listener_;
  AcceptorOptions opt_;
  OnAccept on_accept_;
  OnEvent on_event_;
  Reactor::Id watch_ = 0;
  Timer resume_timer_;
  bool paused_by_owner_ = false;
  bool exhausted_ = false;
  bool exhaustion_said_ = false;  // until a connection is accepted again
  std::uint64_t accepted_ = 0, refused_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl
