#include "lib/ping/dlping.h"

#include <algorithm>
#include <fmt/format.h>

#include "lib/app/cli.h"
#include "lib/base/units.h"
#include "lib/codec/fastsocket.h"
#include "lib/ping/client.h"
#include "lib/ping/responder.h"

namespace dl::ping {

Result<std::vector<std::uint32_t>> parse_sweep(const std::string& text, std::uint32_t max_size) {
  std::vector<std::uint32_t> out;
  auto one = [&](std::string_view s) -> Result<std::uint32_t> {
    auto v = parse_size(s, "--sweep");
    if (!v) return v.error();
    if (*v > max_size) return make_error(ErrorKind::usage, "--sweep " + text, fmt::format("{} is larger than {}", *v, max_size));
    return static_cast<std::uint32_t>(*v);
  };
  auto colon = text.find(':');
  if (colon != std::string::npos) {
    auto a = one(std::string_view(text).substr(0, colon));
    auto b = one(std::string_view(text).substr(colon + 1));
    if (!a) return a.error();
    if (!b) return b.error();
    if (*a == 0 || *b < *a) return make_error(ErrorKind::usage, "--sweep " + text, "expected FROM:TO with 0 < FROM <= TO");
    for (std::uint64_t s = *a; s <= *b; s *= 2) out.push_back(static_cast<std::uint32_t>(s));
    if (out.back() != *b) out.push_back(*b);
  } else {
    std::size_t pos = 0;
    while (pos <= text.size()) {
      auto comma = text.find(',', pos);
      auto part = std::string_view(text).substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      auto v = one(part);
      if (!v) return v.error();
      out.push_back(*v);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  if (out.empty() || out.size() > 64) return make_error(ErrorKind::usage, "--sweep " + text, "expected 1 to 64 sizes");
  return out;
}

int run_dlping(const DlpingOptions& o, ToolContext& ctx) {
  auto fail = [&](const Error& e) {
    ctx.say(ctx.program + ": " + e.message());
    return exit_code(e.kind);
  };
  auto target = parse_target(o.endpoint, o.listen);
  if (!target) return fail(target.error());
  if (target->udp && o.proto == Proto::fastsocket)
    return fail(make_error(ErrorKind::usage, "--proto fastsocket", "fastSocket runs over TCP (or unix), not udp:"));
  if (auto st = check_key_flags(o.tls, o.listen, !target->udp); !st) return fail(st.error());
  if (o.proto == Proto::fastsocket && !o.listen) {
    // fastSocket's reader drops a connection on a line over 64 KiB (shared/notes): such a
    // probe would only ever come back as "Connection reset by peer".
    std::string line;
    fastsocket::append_message(line, "\"" + std::string(36, '0') + "\"", "\"\"");
    std::size_t most = fastsocket::kMaxLine - line.size();
    for (std::uint32_t size : o.sizes) {
      if (size > most) {
        return fail(make_error(ErrorKind::usage, "--size " + std::to_string(size),
                               fmt::format("at most {} with --proto fastsocket (its lines are at most 64 KiB)", most)));
      }
    }
  }
  std::shared_ptr<TlsConfig> tls;
  if (o.tls.any()) {
    auto cfg = TlsConfig::load(o.tls, o.listen ? TlsRole::listener : TlsRole::dialer);
    if (!cfg) return fail(cfg.error());
    tls = std::move(*cfg);
  }
  if (o.cpu >= 0) {
    auto st = pin_to_cpu(o.cpu);
    if (!st) return fail(st.error());
  }
  Reactor reactor;
  reactor.set_busy_poll(o.busy_poll);
  if (o.listen) {
    Responder responder(o, ctx, reactor, *target, tls);
    SignalWatcher signals(reactor, [&](int sig) {
      if (sig == SIGUSR1) {
        responder.interim();
      } else {
        responder.stop();
      }
    });
    auto st = responder.start();
    if (!st) return fail(st.error());
    return responder.run();
  }
  // Probes leave on schedule: the kernel's default 50 us timer slack would make a 1 ms interval
  // wander by tens of microseconds.
  reactor.set_timer_slack(std::chrono::nanoseconds(1));
  Client client(o, ctx, reactor, *target, tls);
  SignalWatcher signals(reactor, [&](int sig) {
    if (sig == SIGUSR1) {
      client.interim();
    } else {
      client.stop();
    }
  });
  return client.run();
}

}  // namespace dl::ping
