// client: dlping's measuring side (internal to lib/ping; run_dlping drives it). Connects,
// runs one phase per probe size (warm-up phases apart), and fills RunFigures. See dlping.h.
#pragma once

#include <cstdint>
#include <memory>

#include "lib/app/context.h"
#include "lib/net/reactor.h"
#include "lib/net/tls.h"
#include "lib/ping/dlping.h"
#include "lib/ping/report.h"
#include "lib/ping/transport.h"

namespace dl::ping {

class Client {
 public:
  // `tls`: the loaded keys (null: none); every TCP or unix connection goes through TLS with them.
  Client(const DlpingOptions& o, ToolContext& ctx, Reactor& r, Target t, std::shared_ptr<TlsConfig> tls = nullptr);
  ~Client();
  // Connects, measures, prints; returns the exit code. Blocks.
  int run();
  // SIGINT/SIGTERM: stop sending, finish with what was measured.
  void stop();
  // SIGUSR1: print the summary so far and go on.
  void interim();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dl::ping
