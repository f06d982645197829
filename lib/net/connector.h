// Connector: dials one stream Endpoint (tcp or unix) until a connection is made or a deadline
// passes. Every round resolves the name afresh (a server that moved to a new address is found
// on the next round), tries each address in the resolver's order, and waits between rounds as
// a Backoff says, with a last round at the deadline itself. Non-blocking and reactor-driven;
// a host name is resolved on a short-lived helper thread so the reactor never waits on DNS.
//
// Not a reconnecting link: it hands over one connected descriptor (or the last error) through
// its callback and is done; start() again to dial again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "lib/base/backoff.h"
#include "lib/base/clock.h"
#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/endpoint.h"
#include "lib/net/reactor.h"

namespace dl {

struct ConnectorOptions {
  BackoffPolicy backoff;
  // Give up after this instant (time_point::max(): never). The last round starts at it.
  Clock::time_point deadline = Clock::time_point::max();
  // One address's connect may take this long (a black-holed SYN otherwise takes minutes).
  // An attempt may run up to kLastAttemptGrace past the deadline, so the last one is real.
  Clock::duration attempt_timeout = std::chrono::seconds(10);
  // A name that has never resolved ends the dial at once (ErrorKind::resolve, like curl);
  // once it has resolved, a later failure is retried (a DNS blip during a reconnect).
  bool fail_fast_on_resolve = true;
  // Replaces resolve() (endpoint.h), called on the reactor's thread at every round; it must
  // not block. For tests and for callers with addresses of their own. Empty: the system's.
  std::function<Result<std::vector<SocketAddress>>(const Endpoint&)> resolver;
};

struct Connected {
  Fd fd;  // non-blocking, close-on-exec, tuned (tune_stream_socket)
  SocketAddress peer;
};

class Connector {
 public:
  // Called once per start(): a connection, or the last error of the last round (kinds:
  // usage for a udp: endpoint, resolve, connect). The callback may destroy the Connector.
  using Done = std::function<void(Result<Connected>)>;
  static constexpr Clock::duration kLastAttemptGrace = std::chrono::seconds(1);

  Connector(Reactor& reactor, Endpoint endpoint, ConnectorOptions options, Done done);
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Starts dialing now (the first round runs inside this call when the host is a literal).
  // Restarts if already dialing. Never blocks.
  void start();
  // Stops dialing; no callback follows.
  void cancel();
  bool active() const { return active_; }
  int rounds() const { return rounds_; }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  struct ResolveJob;
  void round();
  void on_resolved(Result<std::vector<SocketAddress>> addrs);
  void try_next();
  void on_connect_ready();
  void on_attempt_timeout();
  void drop_attempt();
  void retry_or_finish();
  void finish(Result<Connected> r);

  Reactor& reactor_;
  Endpoint endpoint_;
  ConnectorOptions opt_;
  Done done_;
  Backoff backoff_;
  bool active_ = false;
  bool ever_resolved_ = false;
  int rounds_ = 0;
  Error last_;
  std::vector<SocketAddress> addrs_;
  std::size_t next_addr_ = 0;
  Fd attempt_fd_;
  SocketAddress attempt_peer_;
  Reactor::Id attempt_watch_ = 0;
  Timer attempt_timer_;
  Timer retry_timer_;
  std::shared_ptr<ResolveJob> job_;
  Reactor::Id job_watch_ = 0;
};

}  // namespace dl
