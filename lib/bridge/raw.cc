#include "lib/bridge/raw.h"

#include <sys/socket.h>

#include <algorithm>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <vector>

#include "lib/net/acceptor.h"
#include "lib/net/refusal_log.h"
#include "lib/net/connector.h"
#include "lib/net/net.h"
#include "lib/net/pump.h"
#include "lib/net/stream.h"

namespace dl::bridge {

namespace {

constexpr const char* kName[2] = {"a", "b"};
// A relay pipe of 1 MiB: fewer splice round trips per byte than the 256 KiB default. The
// copying relay holds as much, so one read and one write move what a wake-up finds.
constexpr std::size_t kRelayPipe = 1u << 20;
// The user-space queues below hold chunks of at most kChunk bytes. Each is bounded by what its
// chunks cost, not only the bytes they carry: a peer that sends a byte per segment makes a chunk
// per byte, and each costs its vector, its heap block and its queue slot besides.
constexpr std::size_t kChunk = 64 * 1024, kChunkCost = 64;

// Reads at most kChunk bytes from `from` into `out`, sized to what was read: a short read is
// moved into a buffer of its own size (a full one, the bulk case, is kept without a copy).
// Returns what read(2) returned.
ssize_t read_chunk(Stream& from, std::vector<std::uint8_t>& out) {
  out.resize(kChunk);
  ssize_t n = from.read(out.data(), out.size());
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  out.shrink_to_fit();
  return n;
}

// Splice between hosts, copy between two local peers (SpliceMode says why). On loopback,
// measured with scripts/bench's relay row: splice 10-13 Gbit/s and ~1.07 s of CPU per GiB over
// sender, relay and receiver (the receiver's copy of pages spliced through costs ~2.5x a
// copy of freshly written ones); copying 16 Gbit/s and ~0.91 s/GiB; socat 14 and ~1.0.
bool use_splice(SpliceMode mode, const Stream& a, const Stream& b) {
  if (mode != SpliceMode::automatic) return mode == SpliceMode::on;
  return !(peer_is_local(a.fd()) && peer_is_local(b.fd()));
}

// A reset, not a polite close: what a cut looks like to the peers (RST, as a broken path or a
// crashed relay would give them).
void reset_on_close(Stream* s) {
  if (!s || s->fd() < 0) return;
  linger l{1, 0};
  ::setsockopt(s->fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// Moves bytes from one Stream to another through a delay line and a token bucket, in chunks,
// with a bounded amount held; passes the half-close on. The user-space path for --fault.
class ShapedPump {
 public:
  using Done = std::function<void(Status)>;
  ShapedPump(Reactor& r, Stream& from, Stream& to, const Faults& f, std::function<void()> progress, Done done)
      : from_(from), to_(to), bucket_(f.rate_bits / 8, std::max(64.0 * 1024, f.rate_bits / 8 / 50)),
        delay_(f), progress_(std::move(progress)), done_(std::move(done)), timer_(r, [this] { write_some(); }) {}

  ~ShapedPump() { *alive_ = false; }

  void start() {
    from_.on_readable([this] { read_some(); });
    to_.on_writable([this] { write_some(); });
    update();
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  static constexpr std::size_t kMaxHeld = 4u << 20;
  struct Chunk {
    std::vector<std::uint8_t> data;
    std::size_t off = 0;
    Clock::time_point at;
    bool paid = false;
  };

  void read_some() {
    auto alive = alive_;
    while (!eof_ && held_ < kMaxHeld) {
      Chunk c;
      ssize_t n = read_chunk(from_, c.data);
      if (n == 0) {
        eof_ = true;
        break;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return finish(errno_error(ErrorKind::io, "read", errno));
      }
      c.at = delay_.enabled() ? delay_.release_at(Clock::now()) : Clock::now();
      held_ += c.data.size() + kChunkCost;
      q_.push_back(std::move(c));
    }
    write_some();
    if (*alive) update();
  }

  void write_some() {
    auto alive = alive_;
    blocked_ = false;
    Clock::time_point now = Clock::now();
    while (!q_.empty()) {
      Chunk& c = q_.front();
      if (c.at > now) {
        timer_.arm(c.at);
        break;
      }
      std::size_t left = c.data.size() - c.off;
      if (!c.paid) {
        if (!bucket_.take(left, now)) {
          timer_.arm(bucket_.ready_at(left, now));
          break;
        }
        c.paid = true;
      }
      ssize_t n = to_.write(c.data.data() + c.off, left);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          blocked_ = true;
          break;
        }
        return finish(errno_error(ErrorKind::io, "write", errno));
      }
      c.off += static_cast<std::size_t>(n);
      bytes_ += static_cast<std::uint64_t>(n);
      held_ -= static_cast<std::size_t>(n);
      if (c.off == c.data.size()) {
        held_ -= kChunkCost;
        q_.pop_front();
      }
      if (progress_) {
        progress_();  // may cut the pair and destroy us
        if (!*alive) return;
      }
    }
    if (eof_ && q_.empty() && !finished_) {
      Status st = to_.shutdown_write();
      return finish(st);
    }
    update();
  }

  void update() {
    if (finished_) return;
    from_.want_read(!eof_ && held_ < kMaxHeld);
    to_.want_write(blocked_);
  }

  void finish(Status st) {
    if (finished_) return;
    finished_ = true;
    from_.want_read(false);
    to_.want_write(false);
    timer_.cancel();
    done_(std::move(st));
  }

  Stream& from_;
  Stream& to_;
  TokenBucket bucket_;
  DelayLine delay_;
  std::function<void()> progress_;
  Done done_;
  Timer timer_;
  std::deque<Chunk> q_;
  std::size_t held_ = 0;
  std::uint64_t bytes_ = 0;
  bool eof_ = false, finished_ = false, blocked_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once destroyed
};

// How both raw relays speak: one line per event, "dlbridge: ...", sides named a and b.
class RawOutput {
 protected:
  RawOutput(const DlbridgeOptions& o, ToolContext& ctx) : o_(o), ctx_(ctx) {}
  static Error side_error(int side, Error e) {
    e.context = fmt::format("{}: {}", kName[side], e.context);
    return e;
  }
  int fail(const Error& e) {
    ctx_.say(ctx_.program + ": " + e.message());
    return exit_code(e.kind);
  }
  void info(const std::string& line) {
    if (o_.verbosity.verbose) ctx_.say(ctx_.program + ": " + line);
  }
  void warn(const std::string& line) {
    if (!o_.verbosity.quiet) ctx_.say(ctx_.program + ": " + line);
  }
  // Accepts on a listening side as message mode does: only peers its --allow list lets in, and
  // whoever is refused is named, rate-limited as every listener of the family (a flood of
  // strangers must not flood the log).
  std::unique_ptr<Acceptor> accept_on(int side, Listener l, Acceptor::OnAccept on_accept) {
    AcceptorOptions ao;
    ao.allow = o_.side[side].link.allow;
    return std::make_unique<Acceptor>(reactor_, std::move(l), ao, std::move(on_accept),
                                      [this, side](const Error& e, const SocketAddress* peer) {
                                        if (!peer) return warn(fmt::format("{}: {}", kName[side], e.message()));
                                        refused(side, *peer, e);
                                      });
  }
  void refused(int side, const SocketAddress& peer, const Error& why) {
    if (!refusals_.allowed(why.kind)) return;
    warn(fmt::format("{}: refused {}: {}{}", kName[side], peer.to_string(), why.message(), refusals_.hidden_note()));
  }
  const DlbridgeOptions& o_;
  ToolContext& ctx_;
  Reactor reactor_;
  RefusalLog refusals_{reactor_, [this](const std::string& line) { warn(line); }};
};

class RawBridge : RawOutput {
 public:
  RawBridge(const DlbridgeOptions& o, ToolContext& ctx) : RawOutput(o, ctx) {
    for (int i = 0; i < 2; ++i) shaped_[i] = o.faults.side[i].any();
  }

  int run() {
    SignalWatcher signals(reactor_, [&](int sig) {
      if (sig == SIGUSR1) print_stats();
      else stop_ = exit_code(ErrorKind::cancelled);
    });
    for (int i = 0; i < 2; ++i) {
      const LinkOptions& lo = o_.side[i].link;
      if (lo.endpoint.kind == Endpoint::Kind::udp) {
        return fail(make_error(ErrorKind::usage, fmt::format("side {}: {}", kName[i], lo.endpoint.to_string()),
                               "--raw relays stream sockets (TCP or unix), not UDP"));
      }
      if (!lo.listen) continue;
      auto l = listen_on(lo.endpoint);
      if (!l) return fail(side_error(i, l.error()));
      std::uint16_t port = port_of(l->local);
      std::string where = l->local.to_string();
      if (!o_.side[i].port_file.empty()) {
        if (auto st = write_port_file(o_.side[i].port_file, port); !st) return fail(st.error());
      } else if (lo.endpoint.kind == Endpoint::Kind::tcp && lo.endpoint.port == 0 && !o_.verbosity.quiet) {
        ctx_.say(fmt::format("{}: {}: listening on {}", ctx_.program, kName[i], where));
      }
      info(fmt::format("{}: listening on {}", kName[i], where));
      acceptor_[i] = accept_on(i, std::move(*l), [this, i](Accepted a) { on_accept(i, std::move(a)); });
    }
    if (!acceptor_[0] && !acceptor_[1]) {
      // Both sides dial: one relayed conversation, then done.
      auto& p = new_pair();
      for (int i = 0; i < 2; ++i) dial(p, i);
      once_ = true;
    }
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
    while (!stop_) reactor_.run_once();
    pairs_.clear();
    if (o_.verbosity.verbose) print_stats();
    return *stop_;
  }

 private:
  struct Pair {
    int id = 0;
    std::unique_ptr<Stream> s[2];
    SocketAddress peer[2];
    std::unique_ptr<Connector> dial[2];
    std::unique_ptr<Pump> pump[2];          // pump[i]: side i -> side 1-i
    std::unique_ptr<ShapedPump> shaped[2];
    bool done[2] = {false, false};
    std::uint64_t base[2] = {0, 0};         // bytes moved before (for cut=)
    std::unique_ptr<Timer> cut_timer;
    bool dying = false;
    std::uint64_t moved(int dir) const {
      return pump[dir] ? pump[dir]->bytes() : shaped[dir] ? shaped[dir]->bytes() : 0;
    }
  };


  Pair& new_pair() {
    auto p = std::make_unique<Pair>();
    p->id = ++next_id_;
    Pair& ref = *p;
    pairs_[p->id] = std::move(p);
    return ref;
  }

  void on_accept(int side, Accepted a) {
    info(fmt::format("{}: accepted {}", kName[side], a.peer.to_string()));
    int other = 1 - side;
    if (acceptor_[other]) {
      // Both sides listen: pair with the oldest client still there on the other side.
      reap_waiting(other);
      if (!waiting_[other].empty()) {
        Pair& p = new_pair();
        attach(p, side, std::move(a.fd), a.peer);
        Waiting w = std::move(waiting_[other].front());
        waiting_[other].pop_front();
        reactor_.unwatch(w.watch);
        attach(p, other, std::move(w.conn.fd), w.conn.peer);
        return;
      }
      reap_waiting(side);
      if (waiting_[side].size() >= kMaxWaiting) {
        refused(side, a.peer,
                make_error(ErrorKind::too_large, "connection from " + a.peer.to_string(),
                           fmt::format("{} clients already wait for a partner on side {}", kMaxWaiting, kName[other])));
        return;  // closed as it goes out of scope
      }
      // Watched while it waits, so one that leaves (a port probe) is noticed and never paired.
      Waiting w;
      w.id = ++next_waiting_;
      std::uint64_t id = w.id;
      w.watch = reactor_.watch(a.fd.get(), POLLIN, [this, side, id](short) { check_waiting(side, id); });
      w.conn = std::move(a);
      waiting_[side].push_back(std::move(w));
      return;
    }
    Pair& p = new_pair();
    attach(p, side, std::move(a.fd), a.peer);
    dial(p, other);
  }

  // A waiting client became readable: it left (end of stream, error), or it spoke before its
  // partner came (kept, and no longer watched: its bytes wait in the socket for the pump).
  void check_waiting(int side, std::uint64_t id) {
    for (Waiting& w : waiting_[side]) {
      if (w.id != id) continue;
      char byte;
      ssize_t n = ::recv(w.conn.fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      reactor_.unwatch(w.watch);
      w.watch = 0;
      if (n <= 0) {
        info(fmt::format("{}: {} left before a partner came", kName[side], w.conn.peer.to_string()));
        w.gone = true;
      }
      break;
    }
    // Removal waits for the end of this callback's dispatch.
    reactor_.at(Clock::now(), [this, side] { reap_waiting(side); });
  }

  void reap_waiting(int side) {
    auto& q = waiting_[side];
    for (auto it = q.begin(); it != q.end();) {
      if (it->gone) {
        if (it->watch) reactor_.unwatch(it->watch);
        it = q.erase(it);
      } else {
        ++it;
      }
    }
  }

  void dial(Pair& p, int side) {
    const LinkOptions& lo = o_.side[side].link;
    ConnectorOptions co;
    co.backoff = lo.backoff;
    co.deadline = lo.wait_s < 0 ? Clock::time_point::max() : deadline_after(Clock::now(), lo.wait_s);
    int id = p.id;
    p.dial[side] = std::make_unique<Connector>(reactor_, lo.endpoint, co, [this, id, side](Result<Connected> r) {
      auto it = pairs_.find(id);
      if (it == pairs_.end()) return;
      Pair& q = *it->second;
      if (!r) {
        Error e = side_error(side, r.error());
        warn(e.message());
        if (once_) stop_ = exit_code(e.kind);
        kill(q, /*reset=*/true);
        return;
      }
      info(fmt::format("{}: connected to {}", kName[side], r->peer.to_string()));
      attach(q, side, std::move(r->fd), r->peer);
    });
    p.dial[side]->start();
  }

  void attach(Pair& p, int side, Fd fd, const SocketAddress& peer) {
    p.s[side] = Stream::from_fd(reactor_, std::move(fd));
    p.peer[side] = peer;
    if (p.s[0] && p.s[1]) start(p);
  }

  void start(Pair& p) {
    int id = p.id;
    bool splice = use_splice(o_.splice, *p.s[0], *p.s[1]);
    for (int dir = 0; dir < 2; ++dir) {
      auto done = [this, id, dir](Status st) { pump_done(id, dir, std::move(st)); };
      Stream& from = *p.s[dir];
      Stream& to = *p.s[1 - dir];
      if (shaped_[0] || shaped_[1]) {
        // A fault on side X shapes what goes to X and counts the bytes through X's connection.
        p.shaped[dir] = std::make_unique<ShapedPump>(reactor_, from, to, o_.faults.side[1 - dir],
                                                     [this, id] { check_cut(id); }, done);
        p.shaped[dir]->start();
      } else {
        PumpOptions po;
        po.buffer = kRelayPipe;
        po.splice = splice;
        p.pump[dir] = std::make_unique<Pump>(from, to, po, done);
        p.pump[dir]->start();
      }
    }
    // A cut resets the whole pair, so the side whose cut-every comes first is the one that counts.
    int first = -1;
    for (int side = 0; side < 2; ++side) {
      double every = o_.faults.side[side].cut_every_s;
      if (every > 0 && (first < 0 || every < o_.faults.side[first].cut_every_s)) first = side;
    }
    if (first >= 0) {
      p.cut_timer = std::make_unique<Timer>(reactor_, [this, id, first] { cut(id, first, "cut-every"); });
      p.cut_timer->arm(deadline_after(Clock::now(), o_.faults.side[first].cut_every_s));
    }
    const char* how = p.pump[0] ? (p.pump[0]->splicing() ? " (splice)" : " (copy)") : "";
    info(fmt::format("relaying {} <-> {}{}", p.peer[0].to_string(), p.peer[1].to_string(), how));
  }

  void check_cut(int id) {
    auto it = pairs_.find(id);
    if (it == pairs_.end()) return;
    Pair& p = *it->second;
    for (int side = 0; side < 2; ++side) {
      std::uint64_t limit = o_.faults.side[side].cut_bytes;
      if (limit && p.moved(0) + p.moved(1) >= limit) return cut(id, side, "cut");
    }
  }

  void cut(int id, int side, const char* why) {
    auto it = pairs_.find(id);
    if (it == pairs_.end() || it->second->dying) return;
    ++cuts_;
    info(fmt::format("{}: fault {}: resetting {} <-> {}", kName[side], why, it->second->peer[0].to_string(),
                     it->second->peer[1].to_string()));
    kill(*it->second, /*reset=*/true);
  }

  void pump_done(int id, int dir, Status st) {
    auto it = pairs_.find(id);
    if (it == pairs_.end()) return;
    Pair& p = *it->second;
    p.done[dir] = true;
    if (!st) {
      info(fmt::format("{} -> {}: {}", kName[dir], kName[1 - dir], st.error().message()));
      kill(p, /*reset=*/true);
      return;
    }
    if (p.done[0] && p.done[1]) kill(p, /*reset=*/false);
  }

  // Ends a pair after the current callback has returned (callbacks may not destroy their own
  // pump or stream under their feet).
  void kill(Pair& p, bool reset) {
    if (p.dying) return;
    p.dying = true;
    if (reset) {
      reset_on_close(p.s[0].get());
      reset_on_close(p.s[1].get());
    }
    for (int dir = 0; dir < 2; ++dir) {
      if (p.pump[dir]) p.pump[dir]->stop();
      moved_[dir] += p.moved(dir);
    }
    info(fmt::format("closed {} <-> {}: {} bytes a->b, {} bytes b->a", p.peer[0].to_string(), p.peer[1].to_string(),
                     p.moved(0), p.moved(1)));
    int id = p.id;
    reactor_.at(Clock::now(), [this, id] {
      pairs_.erase(id);
      if (once_ && pairs_.empty() && !stop_) stop_ = kExitOk;
    });
  }

  void print_stats() {
    std::uint64_t live[2] = {0, 0};
    for (auto& [id, p] : pairs_) {
      for (int dir = 0; dir < 2; ++dir) live[dir] += p->moved(dir);
    }
    ctx_.say(fmt::format("{}: raw: {} relayed connections open; a->b {}, b->a {}; {} cut by fault", ctx_.program,
                         pairs_.size(), human_bytes(static_cast<double>(moved_[0] + live[0])),
                         human_bytes(static_cast<double>(moved_[1] + live[1])), cuts_));
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
  }

  static constexpr std::size_t kMaxWaiting = 64;
  Timer stats_timer_{reactor_, [this] { print_stats(); }};
  std::unique_ptr<Acceptor> acceptor_[2];
  struct Waiting {
    Accepted conn;
    Reactor::Id watch = 0;
    std::uint64_t id = 0;
    bool gone = false;
  };
  std::deque<Waiting> waiting_[2];
  std::uint64_t next_waiting_ = 0;
  std::map<int, std::unique_ptr<Pair>> pairs_;
  bool shaped_[2] = {false, false};
  bool once_ = false;
  int next_id_ = 0;
  std::uint64_t moved_[2] = {0, 0};
  std::uint64_t cuts_ = 0;
  std::optional<int> stop_;
};


// --fanout: side a listens and keeps any number of clients; side b is one connection. What b
// sends is copied to every client (chunks stay queued until the slowest client took them, so
// that client sets the pace); what a client sends is queued for b as whole chunks.
class FanoutBridge : RawOutput {
 public:
  FanoutBridge(const DlbridgeOptions& o, ToolContext& ctx) : RawOutput(o, ctx) {}

  int run() {
    SignalWatcher signals(reactor_, [&](int sig) {
      if (sig == SIGUSR1) print_stats();
      else stop_ = exit_code(ErrorKind::cancelled);
    });
    const LinkOptions& la = o_.side[0].link;
    const LinkOptions& lb = o_.side[1].link;
    if (!la.listen) return fail(make_error(ErrorKind::usage, "--fanout", "side a must listen (it is where the clients come)"));
    auto l = listen_on(la.endpoint);
    if (!l) return fail(side_error(0, l.error()));
    if (!o_.side[0].port_file.empty()) {
      if (auto st = write_port_file(o_.side[0].port_file, port_of(l->local)); !st) return fail(st.error());
    }
    info(fmt::format("a: listening on {} (fanout)", l->local.to_string()));
    clients_acceptor_ = accept_on(0, std::move(*l), [this](Accepted a) { add_client(std::move(a)); });
    if (lb.listen) {
      auto lbl = listen_on(lb.endpoint);
      if (!lbl) return fail(side_error(1, lbl.error()));
      if (!o_.side[1].port_file.empty()) {
        if (auto st = write_port_file(o_.side[1].port_file, port_of(lbl->local)); !st) return fail(st.error());
      }
      upstream_acceptor_ = accept_on(1, std::move(*lbl), [this](Accepted a) {
        if (b_) return;  // one upstream connection; later ones are closed
        info(fmt::format("b: accepted {}", a.peer.to_string()));
        set_upstream(std::move(a.fd));
      });
    } else {
      ConnectorOptions co;
      co.backoff = lb.backoff;
      co.deadline = lb.wait_s < 0 ? Clock::time_point::max() : deadline_after(Clock::now(), lb.wait_s);
      dial_ = std::make_unique<Connector>(reactor_, lb.endpoint, co, [this](Result<Connected> r) {
        if (!r) {
          stop_ = fail(side_error(1, r.error()));
          return;
        }
        info(fmt::format("b: connected to {}", r->peer.to_string()));
        set_upstream(std::move(r->fd));
      });
      dial_->start();
    }
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
    while (!stop_) reactor_.run_once();
    if (o_.verbosity.verbose) print_stats();
    return *stop_;
  }

 private:
  static constexpr std::size_t kMaxQueued = 1u << 20;
  struct Client {
    std::unique_ptr<Stream> s;
    SocketAddress peer;
    std::uint64_t sent = 0;      // absolute offset into the broadcast stream written so far
    bool reading = true, shut = false;
  };


  void set_upstream(Fd fd) {
    b_ = Stream::from_fd(reactor_, std::move(fd));
    b_->on_readable([this] { read_upstream(); });
    b_->on_writable([this] { write_upstream(); });
    update();
  }

  void add_client(Accepted a) {
    info(fmt::format("a: client {} joined ({} now)", a.peer.to_string(), clients_.size() + 1));
    auto c = std::make_unique<Client>();
    c->s = Stream::from_fd(reactor_, std::move(a.fd));
    c->peer = a.peer;
    c->sent = bcast_end_;  // a newcomer gets what comes from now on
    Client* raw = c.get();
    c->s->on_readable([this, raw] { read_client(raw); });
    c->s->on_writable([this, raw] {
      write_client(raw);
      retire();  // what it took may have been the last hold on a chunk: b may be read again
      update();
    });
    clients_.push_back(std::move(c));
    if (b_eof_ && bcast_.empty()) finish_client(raw);
    update();
  }

  void drop_client(Client* c, const std::string& why) {
    info(fmt::format("a: client {} left ({})", c->peer.to_string(), why));
    dead_.push_back(c);
    reactor_.at(Clock::now(), [this] { reap(); });
  }

  void reap() {
    for (Client* d : dead_) {
      for (auto it = clients_.begin(); it != clients_.end(); ++it) {
        if (it->get() == d) {
          clients_.erase(it);
          break;
        }
      }
    }
    dead_.clear();
    retire();
    update();
  }

  bool dead(const Client* c) const { return std::find(dead_.begin(), dead_.end(), c) != dead_.end(); }

  // b -> clients
  void read_upstream() {
    while (!b_eof_ && bcast_bytes_ < kMaxQueued) {
      std::vector<std::uint8_t> chunk;
      ssize_t n = read_chunk(*b_, chunk);
      if (n == 0) {
        b_eof_ = true;
        info("b: end of stream");
        break;
      }
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) upstream_gone(errno_error(ErrorKind::io, "b: read", errno));
        break;
      }
      bcast_bytes_ += chunk.size() + kChunkCost;
      bcast_end_ += chunk.size();
      from_b_ += chunk.size();
      bcast_.push_back(std::move(chunk));
    }
    for (auto& c : clients_) write_client(c.get());
    retire();
    update();
  }

  void write_client(Client* c) {
    if (dead(c) || c->shut) return;
    std::uint64_t off = bcast_start_;
    for (const auto& chunk : bcast_) {
      std::uint64_t end = off + chunk.size();
      while (c->sent < end) {
        std::size_t at = static_cast<std::size_t>(c->sent - off);
        ssize_t n = c->s->write(chunk.data() + at, chunk.size() - at);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) {
            c->s->want_write(true);
            return;
          }
          return drop_client(c, errno_error(ErrorKind::io, "write", errno).message());
        }
        c->sent += static_cast<std::uint64_t>(n);
      }
      off = end;
    }
    c->s->want_write(false);
    if (b_eof_ && c->sent == bcast_end_) finish_client(c);
  }

  void finish_client(Client* c) {
    if (c->shut) return;
    c->shut = true;
    (void)c->s->shutdown_write();
  }

  // Drops chunks every live client has written.
  void retire() {
    std::uint64_t low = bcast_end_;
    for (auto& c : clients_) {
      if (!dead(c.get()) && !c->shut) low = std::min(low, c->sent);
    }
    while (!bcast_.empty() && bcast_start_ + bcast_.front().size() <= low) {
      bcast_start_ += bcast_.front().size();
      bcast_bytes_ -= bcast_.front().size() + kChunkCost;
      bcast_.pop_front();
    }
    if (b_eof_ && bcast_.empty()) {
      for (auto& c : clients_) finish_client(c.get());
    }
  }

  // clients -> b
  void read_client(Client* c) {
    while (!dead(c) && c->reading && up_bytes_ < kMaxQueued) {
      std::vector<std::uint8_t> chunk;
      ssize_t n = read_chunk(*c->s, chunk);
      if (n == 0) {
        // A fanout client that stops sending has left: with many clients on one upstream
        // connection a half-close cannot be passed on, and keeping it would leak a descriptor
        // for every port probe while b is quiet.
        c->reading = false;
        drop_client(c, "closed");
        break;
      }
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) drop_client(c, errno_error(ErrorKind::io, "read", errno).message());
        break;
      }
      up_bytes_ += chunk.size() + kChunkCost;
      to_b_ += chunk.size();
      up_.push_back(std::move(chunk));
    }
    write_upstream();
  }

  void write_upstream() {
    while (b_ && !up_.empty()) {
      auto& chunk = up_.front();
      ssize_t n = b_->write(chunk.data() + up_off_, chunk.size() - up_off_);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return upstream_gone(errno_error(ErrorKind::io, "b: write", errno));
      }
      up_off_ += static_cast<std::size_t>(n);
      if (up_off_ == chunk.size()) {
        up_bytes_ -= chunk.size() + kChunkCost;
        up_.pop_front();
        up_off_ = 0;
      }
    }
    update();
  }

  void upstream_gone(const Error& e) {
    ctx_.say(ctx_.program + ": " + e.message());
    stop_ = exit_code(ErrorKind::disconnected);
  }

  void update() {
    if (b_) {
      b_->want_read(!b_eof_ && bcast_bytes_ < kMaxQueued);
      b_->want_write(!up_.empty());
      if (b_eof_ && bcast_.empty() && clients_.empty() && up_.empty() && !stop_) {
        // Nothing more can come from b and nobody is left to hear it.
        stop_ = kExitOk;
      }
    }
    for (auto& c : clients_) {
      if (!dead(c.get())) c->s->want_read(c->reading && up_bytes_ < kMaxQueued);
    }
  }

  void print_stats() {
    ctx_.say(fmt::format("{}: fanout: {} clients; b->clients {}, clients->b {}", ctx_.program, clients_.size(),
                         human_bytes(static_cast<double>(from_b_)), human_bytes(static_cast<double>(to_b_))));
    if (o_.stats_interval_s > 0) stats_timer_.arm(deadline_after(Clock::now(), o_.stats_interval_s));
  }

  Timer stats_timer_{reactor_, [this] { print_stats(); }};
  std::unique_ptr<Acceptor> clients_acceptor_, upstream_acceptor_;
  std::unique_ptr<Connector> dial_;
  std::unique_ptr<Stream> b_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<Client*> dead_;
  std::deque<std::vector<std::uint8_t>> bcast_, up_;
  std::uint64_t bcast_start_ = 0, bcast_end_ = 0;
  std::size_t bcast_bytes_ = 0, up_bytes_ = 0, up_off_ = 0;  // *_bytes_: what each queue costs
  std::uint64_t from_b_ = 0, to_b_ = 0;
  bool b_eof_ = false;
  std::optional<int> stop_;
};

}  // namespace

int run_raw_bridge(const DlbridgeOptions& options, ToolContext& ctx) {
  if (options.fanout) {
    FanoutBridge bridge(options, ctx);
    return bridge.run();
  }
  RawBridge bridge(options, ctx);
  return bridge.run();
}

}  // namespace dl::bridge
