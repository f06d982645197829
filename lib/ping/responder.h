// responder: dlping -l, answering probes (internal to lib/ping; run_dlping drives it). Serves
// any number of clients at once on one reactor; a client that sends garbage gets an ERROR
// frame (native) and is disconnected, the others go on. Prints one summary per session.
#pragma once

#include <memory>

#include "lib/app/context.h"
#include "lib/net/reactor.h"
#include "lib/net/tls.h"
#include "lib/ping/dlping.h"
#include "lib/ping/transport.h"

namespace dl::ping {

class Responder {
 public:
  // `tls`: the loaded keys (null: none); every TCP or unix connection goes through TLS with them.
  Responder(const DlpingOptions& o, ToolContext& ctx, Reactor& r, Target t, std::shared_ptr<TlsConfig> tls = nullptr);
  ~Responder();
  // Listens (or binds, for udp), writes --port-file, announces the address. Errors: resolve,
  // connect, io.
  Status start();
  // Serves until stop() or the -w deadline; returns the exit code. Blocks.
  int run();
  void stop();
  // SIGUSR1: print the figures of the open sessions so far.
  void interim();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dl::ping
