#include "lib/bridge/bridge.h"

#include <cmath>
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
      // Sent from where it lies in up's ring: it stays there, unconsumed, until down settled it.
      if (!down.try_forward(m, &error)) {
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

// Message fanout (--fanout without --raw): side a is a multi-session listener with one Link per
// client session, side b one Link. A message from b goes to every client attached when it is
// forwarded; it is released (consumed, so acknowledged) upstream once some client settled it and
// every client that got it has it settled or has left, so the slowest client sets the pace. What
// every client that got it left without settling waits for the next client, which starts with
// it: b's sender never hears "delivered" for a message no receiver has. A client's messages go to b
// and are released to that client once b settled them. b's END goes to each client once it has
// everything; b's direction ends once b's stream ended and every client attached has ended its.
class FanoutBridge {
 public:
  FanoutBridge(const DlbridgeOptions& o, ToolContext& ctx)
      : o_(o), ctx_(ctx), stats_timer_(reactor_, [this] { print_stats(); }),
        first_client_timer_(reactor_, [this] { no_first_client(); }) {}

  int run() {
    SignalWatcher signals(reactor_, [&](int sig) {
      if (sig == SIGUSR1) print_stats();
      else interrupted_ = true;
    });
    // Side a: the listener, and the reporter for what it refuses.
    a_report_ = std::make_unique<Reporter>(ctx_, o_.verbosity, reactor_, "forwarded");
    a_report_->set_label("a");
    ListenerOptions lopt = listener_options(o_.side[0].link);
    lopt.multi_session = true;
    listener_ = std::make_unique<SessionListener>(reactor_, lopt, a_report_.get(),
                                                  [this](const Newcomer& n, Error* why) { return new_client(n, why); });
    if (auto st = listener_->start(); !st) {
      a_report_->error(st.error());
      return exit_code(st.error().kind);
    }
    std::string where = listener_->local().to_string();
    a_report_->set_label(fmt::format("a ({})", where));
    a_report_->on_event(LinkEvent::listening, where, nullptr);
    const Side& sa = o_.side[0];
    if (!sa.port_file.empty()) {
      if (auto st = write_port_file(sa.port_file, port_of(listener_->local())); !st) {
        a_report_->error(st.error());
        return exit_code(st.error().kind);
      }
    } else if (sa.link.endpoint.kind == Endpoint::Kind::tcp && sa.link.endpoint.port == 0) {
      a_report_->announce("listening on " + where);
    }
    // Side b: one link, as in the pair bridge.
    b_report_ = std::make_unique<Reporter>(ctx_, o_.verbosity, reactor_, "forwarded");
    b_report_->set_label("b");
    b_report_->on_readable_cb = [this] { pump(); };
    b_report_->on_writable_cb = [this] { pump(); };
    LinkOptions lb = o_.side[1].link;
    lb.receive_only = false;
    lb.await_peer_end = true;
    b_ = std::make_unique<Link>(reactor_, lb, b_report_.get());
    if (auto rc = start_link(*b_, lb, o_.side[1].port_file, *b_report_)) return *rc;
    b_report_->set_label(fmt::format("b ({})", lb.listen ? b_->local_address().to_string() : lb.endpoint.to_string()));
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
    // -w: a listening side waits this long for its first peer, here its first client.
    if (double w = sa.link.wait_s; w >= 0 && std::isfinite(w)) {
      waiting_since_ = Clock::now();
      first_client_timer_.arm(deadline_after(waiting_since_, w));
    }
    pump();
    while (!interrupted_ && !fatal_) {
      reap();
      if (b_->closed() && !b_->completed()) break;
      if (b_->completed() && clients_.empty()) break;
      reactor_.run_once();
    }
    return conclude();
  }

 private:
  struct Client {
    std::unique_ptr<Reporter> report;
    std::unique_ptr<Link> link;
    std::string peer;
    std::uint64_t next = 0;              // the next message from b (by number) to give it
    std::uint64_t join = 0;              // the first one it gets
    bool ended = false;                  // b's END passed on to it
    std::deque<std::uint64_t> inflight;  // per message taken from it: b's number that settles it
    std::uint64_t messages = 0, bytes = 0;
    bool dropped = false;                // left the set (its session is over); reaped later
    // Messages from b that it has settled: its link is new, so its count starts at zero.
    bool settled(std::uint64_t k) const { return k < join || link->messages_settled() >= k - join + 1; }
  };

  Link* new_client(const Newcomer& n, Error* why) {
    if (n.proto != Proto::native) {
      *why = protocol_error("session-busy", "", "dlbridge --fanout serves native peers only (classic has no sessions)");
      return nullptr;
    }
    if (b_ended_) {
      *why = protocol_error("session-lost", "", "the stream from the other side is over", /*retryable=*/false);
      return nullptr;
    }
    if (live_clients() >= kMaxFanoutClients) {
      *why = protocol_error("session-busy", "", fmt::format("this fanout serves {} clients already", kMaxFanoutClients));
      return nullptr;
    }
    auto c = std::make_unique<Client>();
    c->peer = n.peer.to_string();
    c->report = std::make_unique<Reporter>(ctx_, o_.verbosity, reactor_, "forwarded");
    c->report->set_label("a client " + c->peer);
    c->report->on_readable_cb = [this] { pump(); };
    c->report->on_writable_cb = [this] { pump(); };
    LinkOptions lo = o_.side[0].link;
    lo.listen = true;
    lo.keep_open = false;
    lo.receive_only = false;
    lo.await_peer_end = true;
    lo.wait_s = 0;  // adopted at once
    lo.incarnation = listener_->incarnation();
    c->link = std::make_unique<Link>(reactor_, lo, c->report.get());
    c->report->attach(c->link.get());
    if (auto st = c->link->start(*listener_); !st) {
      *why = st.error();
      return nullptr;
    }
    // It gets what no client has settled yet, on to what arrives from b from now on.
    c->next = c->join = covered_;
    ++joined_;
    clients_.push_back(std::move(c));
    reactor_.request_pass();
    wake_pump_ = true;
    return clients_.back()->link.get();
  }

  std::size_t live_clients() const {
    std::size_t n = 0;
    for (auto& c : clients_) n += !c->dropped;
    return n;
  }

  void drop(Client& c, const std::optional<Error>& why) {
    if (c.dropped) return;
    cover();  // what it settled counts, also once it is gone
    c.dropped = true;
    ++left_;
    if (why) c.report->warn("dropped from the fanout: " + why->message());
    else c.report->info("left the fanout");
  }

  // Clients whose session is over leave the set; their Links go here, outside their callbacks.
  void reap() {
    if (wake_pump_) {
      wake_pump_ = false;
      pump();
    }
    bool changed = false;
    for (auto& c : clients_) {
      if (!c->dropped && c->link->closed()) {
        drop(*c, c->link->completed() ? std::nullopt : c->link->failure());
        changed = true;
      }
    }
    std::size_t before = clients_.size();
    clients_.erase(std::remove_if(clients_.begin(), clients_.end(), [](auto& c) { return c->dropped; }), clients_.end());
    if (changed || clients_.size() != before) pump();
  }

  void pump() {
    if (pumping_) {
      again_ = true;
      return;
    }
    pumping_ = true;
    do {
      again_ = false;
      from_b();
      to_b();
    } while (again_);
    pumping_ = false;
  }

  // Moves covered_ up over what the clients settled. Each settles a run of messages from its
  // join on, so runs that start inside the covered prefix extend it.
  void cover() {
    for (bool grew = true; grew;) {
      grew = false;
      for (auto& c : clients_) {
        if (c->dropped || c->join > covered_) continue;
        std::uint64_t upto = c->join + c->link->messages_settled();
        if (upto > covered_) {
          covered_ = upto;
          grew = true;
        }
      }
    }
  }

  // b -> clients.
  void from_b() {
    Link& b = *b_;
    // Release upstream what some client settled and every client that got it has settled (or
    // left).
    cover();
    std::size_t n = 0;
    while (base_ + n < std::min(frontier_, covered_)) {
      std::uint64_t k = base_ + n;
      bool all = true;
      for (auto& c : clients_) all = all && (c->dropped || c->settled(k));
      if (!all) break;
      ++n;
    }
    if (n) {
      b.consume(n);
      base_ += n;
    }
    Message m;
    for (auto& cp : clients_) {
      Client& c = *cp;
      if (c.dropped || c.ended) continue;
      while (b.peek(m, static_cast<std::size_t>(c.next - base_))) {
        Error error;
        // Sent from b's ring, where it stays until every client that got it settled it or
        // left (a client leaves only once its link is closed and writes no more).
        if (!c.link->try_forward(m, &error)) {
          if (error.kind == ErrorKind::too_large) {
            c.link->abandon("dlbridge: " + error.message());
            drop(c, error);
          }
          break;  // no room in its ring now: its on_writable brings us back
        }
        ++c.next;
        frontier_ = std::max(frontier_, c.next);
      }
    }
    // peek() passes b's END only once every message before it was released.
    b.peek(m, 0);
    if (b.peer_finished() && b.available() == 0) {
      for (auto& c : clients_) {
        if (!c->dropped && !c->ended) {
          c->link->finish();
          c->ended = true;
        }
      }
    }
  }

  // clients -> b, and the end of b's direction.
  void to_b() {
    Link& b = *b_;
    std::uint64_t settled = b.messages_settled();
    bool all_ended = true;
    for (auto& cp : clients_) {
      Client& c = *cp;
      if (c.dropped) continue;
      std::size_t released = 0;
      while (!c.inflight.empty() && c.inflight.front() <= settled) {
        c.inflight.pop_front();
        ++released;
      }
      if (released) c.link->consume(released);
      Message m;
      while (!b_ended_ && c.link->peek(m, c.inflight.size())) {
        std::uint64_t before = b.messages_committed();
        Error error;
        if (!b.try_send(m.payload, m.timestamp, &error)) {
          if (error.kind == ErrorKind::too_large) {
            c.link->abandon("dlbridge: " + error.message());
            drop(c, error);
          }
          break;
        }
        ++c.messages;
        c.bytes += m.payload.size();
        if (b.messages_committed() == before && c.inflight.empty()) {
          c.link->consume(1);  // nothing to wait for (classic drops empty messages)
          continue;
        }
        c.inflight.push_back(b.messages_committed());
      }
      if (c.dropped) continue;
      c.link->peek(m, 0);  // passes its END once everything before it was released
      all_ended = all_ended && c.link->peer_finished() && c.inflight.empty();
    }
    // Nobody served yet: the clients that will come are still to be heard.
    if (!b_ended_ && joined_ > 0 && all_ended && b.peer_finished() && b.available() == 0) {
      b.finish();
      b_ended_ = true;
    }
  }

  void print_stats() {
    std::uint64_t up = 0;
    for (auto& c : clients_) up += c->messages;
    ctx_.say(fmt::format("{}: fanout: {} clients ({} joined, {} left); b->a {} msgs, {} held; a->b {} msgs; b: {} reconnects{}",
                         ctx_.program, live_clients(), joined_, left_, frontier_, frontier_ - base_, up,
                         b_ ? b_->stats().reconnects : 0, b_ && b_->ready() ? "" : ", down"));
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
  }

  void no_first_client() {
    if (joined_ > 0) return;
    fatal_ = make_error(ErrorKind::timeout, "listen " + listener_->local().to_string(),
                        fmt::format("no peer connected within {:.1f} s",
                                    std::chrono::duration<double>(Clock::now() - waiting_since_).count()));
    reactor_.wake();
  }

  int conclude() {
    if (fatal_) {
      b_->abandon("dlbridge stopped: " + fatal_->message());
      a_report_->error(*fatal_);
      return exit_code(fatal_->kind);
    }
    if (interrupted_) {
      for (auto& c : clients_) c->link->abandon("dlbridge was interrupted");
      b_->abandon("dlbridge was interrupted");
      if (!o_.verbosity.quiet) print_stats();
      return exit_code(ErrorKind::cancelled);
    }
    if (b_->failure()) {
      for (auto& c : clients_) c->link->abandon("dlbridge's other side (b) failed");
      b_report_->error(*b_->failure());
      return exit_code(b_->failure()->kind);
    }
    if (o_.verbosity.verbose) print_stats();
    return kExitOk;
  }

  static constexpr std::size_t kMaxFanoutClients = 64;

  const DlbridgeOptions& o_;
  ToolContext& ctx_;
  Reactor reactor_;
  std::unique_ptr<Reporter> a_report_, b_report_;
  std::unique_ptr<SessionListener> listener_;
  std::unique_ptr<Link> b_;
  std::vector<std::unique_ptr<Client>> clients_;
  Timer stats_timer_, first_client_timer_;
  Clock::time_point waiting_since_{};
  std::optional<Error> fatal_;  // side a gave up waiting for its first client
  std::uint64_t base_ = 0;      // number of the oldest message from b not released yet
  std::uint64_t frontier_ = 0;  // messages from b below it went to at least one client
  std::uint64_t covered_ = 0;   // messages from b below it were settled by at least one client
  std::uint64_t joined_ = 0, left_ = 0;
  bool b_ended_ = false, pumping_ = false, again_ = false, interrupted_ = false, wake_pump_ = false;
};

}  // namespace

int run_dlbridge(const DlbridgeOptions& options, ToolContext& ctx) {
  if (options.raw) return run_raw_bridge(options, ctx);
  if (options.fanout) {
    FanoutBridge bridge(options, ctx);
    return bridge.run();
  }
  MessageBridge bridge(options, ctx);
  return bridge.run();
}

}  // namespace dl::bridge
