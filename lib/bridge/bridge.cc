#include "lib/bridge/bridge.h"

#include <deque>
#include <fmt/format.h>
#include <memory>

#include "lib/app/tool.h"
#include "lib/bridge/raw.h"

namespace dl::bridge {

namespace {

constexpr const char* kName[2] = {"a", "b"};

// One direction of a message bridge: what was taken from `from` and where it stands on `to`.
struct Direction {
  int from = 0, to = 1;
  // For each upstream message handed downstream and not yet released upstream: the downstream
  // message number whose settlement releases it. Index-aligned with the upstream link's peek().
  std::deque<std::uint64_t> inflight;
  // For each waiting upstream message seen so far: when the delay line lets it go.
  std::deque<Clock::time_point> release;
  bool ended = false;  // END passed on downstream
  bool paid = false;   // the next message was charged to the rate bucket already
  TokenBucket bucket;
  DelayLine delay;
  std::uint64_t messages = 0, bytes = 0;
  explicit Direction(int f, const Faults& faults)
      : from(f), to(1 - f), bucket(faults.rate_bits / 8, std::max(64.0 * 1024, faults.rate_bits / 8 / 50)),
        delay(faults, 0x5eed + static_cast<std::uint64_t>(f)) {}
};

// A Reporter that also tells the bridge when its side (re)connects, for the cut faults.
class SideReporter : public Reporter {
 public:
  SideReporter(ToolContext& ctx, Verbosity v, Reactor& r, std::function<void()> on_connected)
      : Reporter(ctx, v, r, "forwarded"), on_connected_(std::move(on_connected)) {}
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override {
    Reporter::on_event(e, detail, why);
    if (e == LinkEvent::connected || e == LinkEvent::resumed) on_connected_();
  }

 private:
  std::function<void()> on_connected_;
};

class MessageBridge {
 public:
  MessageBridge(const DlbridgeOptions& o, ToolContext& ctx)
      : o_(o), ctx_(ctx), wake_(reactor_, [this] { pump(); }),
        stats_timer_(reactor_, [this] { print_stats(); }),
        dir_{Direction(0, o.faults.side[1]), Direction(1, o.faults.side[0])} {
    // A fault on side X's hop shapes what goes out on X: rate and delay apply to the direction
    // that sends to X; cuts apply to X's connection.
  }

  int run() {
    SignalWatcher signals(reactor_, [&](int sig) {
      if (sig == SIGUSR1) print_stats();
      else interrupted_ = true;
    });
    for (int i = 0; i < 2; ++i) {
      report_[i] = std::make_unique<SideReporter>(ctx_, o_.verbosity, reactor_, [this, i] { connected(i); });
      report_[i]->set_label(kName[i]);
      report_[i]->on_readable_cb = [this] { pump(); };
      report_[i]->on_writable_cb = [this] { pump(); };
      LinkOptions lo = o_.side[i].link;
      lo.receive_only = false;
      lo.await_peer_end = true;
      link_[i] = std::make_unique<Link>(reactor_, lo, report_[i].get());
      if (auto rc = start_link(*link_[i], lo, o_.side[i].port_file, *report_[i])) return *rc;
      std::string where = lo.listen ? link_[i]->local_address().to_string() : lo.endpoint.to_string();
      report_[i]->set_label(fmt::format("{} ({})", kName[i], where));
      cut_timer_[i] = std::make_unique<Timer>(reactor_, [this, i] { cut(i, "cut-every"); });
    }
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
    pump();
    while (!interrupted_) {
      if (link_[0]->completed() && link_[1]->completed()) break;
      // A side that closed after completing (its peer hung up after the last ack) is done, not
      // gone: the other side still has to deliver and complete.
      bool gone = false;
      for (auto& l : link_) gone = gone || (l->closed() && !l->completed());
      if (gone) break;
      reactor_.run_once();
    }
    return conclude();
  }

 private:
  Link& link(int i) { return *link_[i]; }

  void connected(int side) {
    wire_at_connect_[side] = wire_bytes(side);
    const Faults& f = o_.faults.side[side];
    if (f.cut_every_s > 0) cut_timer_[side]->arm(deadline_after(Clock::now(), f.cut_every_s));
  }

  std::uint64_t wire_bytes(int side) {
    const LinkStats& s = link(side).stats();
    return s.wire_bytes_in + s.wire_bytes_out;
  }

  void cut(int side, const char* why) {
    if (!link(side).ready()) return;
    ++cuts_[side];
    report_[side]->info(fmt::format("fault {}: cutting the connection", why));
    link(side).abort_connection();
  }

  void pump() {
    if (pumping_) {
      again_ = true;  // a link called back while we were inside one of its calls
      return;
    }
    pumping_ = true;
    Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    do {
      again_ = false;
      for (Direction& d : dir_) next = std::min(next, pump_direction(d, now));
    } while (again_);
    pumping_ = false;
    for (int i = 0; i < 2; ++i) {
      std::uint64_t cut_bytes = o_.faults.side[i].cut_bytes;
      if (cut_bytes && link(i).ready() && wire_bytes(i) - wire_at_connect_[i] >= cut_bytes) cut(i, "cut");
    }
    if (next != Clock::time_point::max()) wake_.arm(next);
  }

  // Moves what it can from d.from to d.to; returns when it next needs a wake-up (max: never).
  Clock::time_point pump_direction(Direction& d, Clock::time_point now) {
    Link& up = link(d.from);
    Link& down = link(d.to);
    // Release upstream what the downstream peer has settled: this is the end-to-end ack.
    std::uint64_t settled = down.messages_settled();
    std::size_t released = 0;
    while (!d.inflight.empty() && d.inflight.front() <= settled) {
      d.inflight.pop_front();
      d.release.pop_front();
      ++released;
    }
    if (released) up.consume(released);
    // Stamp every message the moment it is first seen, so the delay counts from its arrival
    // and not from when the one before it left.
    while (d.release.size() < up.available()) d.release.push_back(d.delay.enabled() ? d.delay.release_at(now) : now);
    Message m;
    while (!d.ended && up.peek(m, d.inflight.size())) {
      std::size_t index = d.inflight.size();
      if (d.release[index] > now) return d.release[index];
      // Charged once per message: a send refused for room is retried without paying again.
      if (!d.paid && !d.bucket.take(m.payload.size(), now)) return d.bucket.ready_at(m.payload.size(), now);
      d.paid = true;
      std::uint64_t before = down.messages_committed();
      Error error;
      if (!down.try_send(m.payload, m.timestamp, &error)) {
        if (error.kind == ErrorKind::too_large) {
          fatal_ = error;
          fatal_->context = fmt::format("{} -> {}: {}", kName[d.from], kName[d.to], error.context);
          interrupted_ = true;
          reactor_.wake();
        }
        break;  // no room downstream now: on_writable brings us back
      }
      d.paid = false;
      ++d.messages;
      d.bytes += m.payload.size();
      if (down.messages_committed() == before && d.inflight.empty()) {
        // Nothing to wait for (classic drops empty messages: the seed reads them as keepalives),
        // and nothing before it is waiting either: release it at once.
        d.release.pop_front();
        up.consume(1);
        continue;
      }
      // Otherwise it settles with the message before it (same downstream number).
      d.inflight.push_back(down.messages_committed());
    }
    if (!d.ended && up.peer_finished() && !up.peek(m, d.inflight.size()) && d.inflight.empty()) {
      down.finish();
      d.ended = true;
    }
    return Clock::time_point::max();
  }

  void print_stats() {
    std::string line = ctx_.program + ":";
    for (const Direction& d : dir_) {
      line += fmt::format(" {}->{} {} msgs ({}), {} held;", kName[d.from], kName[d.to], d.messages,
                          human_bytes(static_cast<double>(d.bytes)), d.inflight.size());
    }
    for (int i = 0; i < 2; ++i) {
      const LinkStats& s = link_[i] ? link(i).stats() : LinkStats{};
      line += fmt::format(" {}: {} reconnects{}{}", kName[i], s.reconnects,
                          cuts_[i] ? fmt::format(", {} cut by fault", cuts_[i]) : "",
                          link_[i] && link(i).ready() ? "" : ", down");
      if (i == 0) line += ";";
    }
    ctx_.say(line);
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
  }

  int conclude() {
    if (fatal_) {
      for (auto& l : link_) l->abandon("dlbridge stopped: " + fatal_->message());
      report_[0]->error(*fatal_);
      return exit_code(fatal_->kind);
    }
    if (interrupted_) {
      for (auto& l : link_) l->abandon("dlbridge was interrupted");
      if (!o_.verbosity.quiet) print_stats();
      return exit_code(ErrorKind::cancelled);
    }
    for (int i = 0; i < 2; ++i) {
      if (link(i).failure()) {
        link(1 - i).abandon(fmt::format("dlbridge's other side ({}) failed", kName[i]));
        report_[i]->error(*link(i).failure());
        return exit_code(link(i).failure()->kind);
      }
    }
    if (o_.verbosity.verbose) print_stats();
    return kExitOk;
  }

  const DlbridgeOptions& o_;
  ToolContext& ctx_;
  Reactor reactor_;
  std::unique_ptr<SideReporter> report_[2];
  std::unique_ptr<Link> link_[2];
  std::unique_ptr<Timer> cut_timer_[2];
  Timer wake_, stats_timer_;
  Direction dir_[2];
  std::uint64_t wire_at_connect_[2] = {0, 0};
  std::uint64_t cuts_[2] = {0, 0};
  bool pumping_ = false, again_ = false, interrupted_ = false;
  std::optional<Error> fatal_;
};

}  // namespace

int run_dlbridge(const DlbridgeOptions& options, ToolContext& ctx) {
  if (options.raw) return run_raw_bridge(options, ctx);
  MessageBridge bridge(options, ctx);
  return bridge.run();
}

}  // namespace dl::bridge
