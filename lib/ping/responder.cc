#include "lib/ping/responder.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>
#include <fmt/format.h>

#include "lib/base/clock.h"
#include "lib/codec/fastsocket.h"
#include "lib/codec/frame.h"
#include "lib/codec/ping_payload.h"
#include "lib/net/acceptor.h"
#include "lib/net/net.h"
#include "lib/net/refusal_log.h"
#include "lib/net/tls_gate.h"
#include "lib/ping/report.h"
#include "lib/ping/stats.h"

namespace dl::ping {

namespace {
constexpr std::uint32_t kMaxProbe = 16u << 20;   // the largest -s a client may use, plus slack
constexpr std::size_t kMaxHeld = 4096;            // delayed replies per session before we stop reading
constexpr std::size_t kMaxHeldBytes = 32u << 20;  // ... and their bytes (udp: beyond, probes drop)
constexpr std::size_t kMaxPendingIds = 1 << 16;   // fastSocket messages awaiting their client ack
constexpr std::size_t kMaxPendingBytes = 16 << 20; // ... and the bytes of their ids
std::int64_t to_ns(double s) { return static_cast<std::int64_t>(s * 1e9); }

std::string brief(const char* name, const LatencyStats& s) {
  const auto& h = s.histogram();
  return fmt::format("{}: p50 {}, p99 {}, mean {}, max {} ({} samples)", name,
                     fmt_ns(static_cast<double>(h.percentile(50))), fmt_ns(static_cast<double>(h.percentile(99))),
                     fmt_ns(s.moments().mean()), fmt_ns(s.moments().max()), s.count());
}
}  // namespace

struct Responder::Impl {
  const DlpingOptions& o;
  ToolContext& ctx;
  Reactor& r;
  Target t;
  std::unique_ptr<Acceptor> acceptor;  // TCP and unix: pauses when out of descriptors
  Fd udp;
  Reactor::Id listen_watch = 0;
  std::string bound;  // the address answered on, as announced
  bool stopping = false;
  std::uint64_t next_id = 1;

  // A reply held back by --reply-delay / --turnaround.
  struct Held {
    std::int64_t due = 0;
    int stage = 0;             // 0: waiting to be stamped as received (t1), 1: to be sent (t2)
    bool ack = false;          // an ACK3 / client ack: held by --reply-delay only, then counted
    std::int64_t t1 = 0;
    std::vector<std::uint8_t> bytes;  // native: the PING frame; fastSocket: the id (JSON)
    SocketAddress peer;        // udp
  };

  struct Session {
    std::uint64_t id = 0;
    std::unique_ptr<TlsSocket> sock;  // null for the udp pseudo-session
    bool refused = false;      // reported as a refused connection: no summary
    Reactor::Id watch = 0;
    std::string name;
    InBuffer in;
    OutBuffer out;
    bool want_write = false, reading = true, eof = false;
    std::deque<Held> held;
    std::size_t held_bytes = 0;
    std::uint64_t dropped = 0;  // udp probes not held: the hold was full (a flood)
    std::unique_ptr<Timer> timer;
    // Figures.
    std::uint64_t pings = 0, acks = 0;
    LatencyStats client_rtt, own_rtt, turnaround;
    // fastSocket.
    struct Sent {
      std::int64_t s1, s2;
    };
    std::unordered_map<std::string, Sent> sent;
    std::deque<std::string> sent_order;
    std::size_t order_bytes = 0;
    std::uint64_t forgotten = 0;
    LatencyStats t1, corrected, formula;
  };
  std::map<std::uint64_t, std::unique_ptr<Session>> sessions;
  std::unique_ptr<Session> udp_session;

  std::shared_ptr<TlsConfig> tls;
  std::unique_ptr<TlsGate> gate;  // with keys: every connection's handshake, before a session
  RefusalLog refusals;
  Reactor::Id buffered_hook = 0;

  Impl(const DlpingOptions& o_, ToolContext& c, Reactor& r_, Target t_, std::shared_ptr<TlsConfig> tls_)
      : o(o_), ctx(c), r(r_), t(std::move(t_)), tls(std::move(tls_)), refusals(r_, [this](const std::string& line) {
          if (!o.verbosity.quiet) ctx.say(ctx.program + ": " + line);
        }) {
    if (tls) {
      gate = std::make_unique<TlsGate>(
          r, tls, TlsGateOptions{},
          [this](std::unique_ptr<TlsSocket> sock, const SocketAddress& peer) { open_session(std::move(sock), peer); },
          [this](const Error& e, const SocketAddress& peer) { refusals.refused(peer_name(peer), e); });
      // Probes decrypted already raise no poll event: answer them before sleeping.
      buffered_hook = r.before_poll([this] { drain_buffered(); });
    }
  }
  ~Impl() {
    if (buffered_hook) r.remove_before_poll(buffered_hook);
    for (auto& [id, s] : sessions)
      if (s->watch) r.unwatch(s->watch);
    if (listen_watch) r.unwatch(listen_watch);
  }

  void out_line(const std::string& s) {
    std::string l = s + "\n";
    [[maybe_unused]] auto n = ::write(ctx.stdout_fd, l.data(), l.size());
  }

  Status start() {
    std::uint16_t port = 0;
    std::string where;
    if (t.udp) {
      SocketAddress local;
      auto f = udp_bind(t, &local);
      if (!f) return f.error();
      udp = std::move(*f);
      if (o.busy_poll) socket_busy_poll(udp.get());
      port = port_of(local);
      where = "udp:" + local.to_string();
      udp_session = std::make_unique<Session>();
      udp_session->name = where;
      Session* s = udp_session.get();
      s->timer = std::make_unique<Timer>(r, [this, s] { release_held(*s); });
      listen_watch = r.watch(udp.get(), POLLIN, [this](short) { on_udp(); });
    } else {
      auto l = listen_on(t.endpoint);
      if (!l) return l.error();
      port = port_of(l->local);
      where = l->local.to_string();
      // The family's Acceptor, not accept(2) on a readable listener: out of descriptors, that
      // spun at 100% CPU writing "accept: Too many open files" a million times a second.
      acceptor = std::make_unique<Acceptor>(
          r, std::move(*l), AcceptorOptions{}, [this](Accepted a) { on_accept(std::move(a.fd), a.peer); },
          [this](const Error& e, const SocketAddress*) {
            if (!o.verbosity.quiet) ctx.say(ctx.program + ": " + e.message());
          });
    }
    bound = where;
    if (!o.port_file.empty()) {
      auto st = write_port_file(o.port_file, port);
      if (!st) return st;
    }
    if (!o.verbosity.quiet) {
      out_line(fmt::format("dlping: answering {} probes on {}", o.proto == Proto::native ? "native" : "fastSocket", where));
    }
    return ok_status();
  }

  // ---- streams
  void on_accept(Fd f, const SocketAddress& peer) {
    if (gate) {
      gate->admit(std::move(f), peer);  // a session once it proved its keys
      return;
    }
    // Blocking mode, but every call except the single-client wait passes MSG_DONTWAIT.
    int flags = ::fcntl(f.get(), F_GETFL);
    if (flags >= 0) ::fcntl(f.get(), F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{0, 20000};
    ::setsockopt(f.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    open_session(std::make_unique<TlsSocket>(std::move(f)), peer);
  }

  std::string peer_name(const SocketAddress& peer) const {
    return peer.family() == AF_UNIX ? t.text + " #" + std::to_string(next_id) : peer.to_string();
  }

  void open_session(std::unique_ptr<TlsSocket> sock, const SocketAddress& peer) {
    auto s = std::make_unique<Session>();
    s->name = peer_name(peer);
    s->id = next_id++;
    s->sock = std::move(sock);
    if (o.busy_poll) socket_busy_poll(s->sock->fd());
    Session* sp = s.get();
    s->timer = std::make_unique<Timer>(r, [this, sp] { release_held(*sp); });
    s->watch = r.watch(s->sock->fd(), POLLIN, [this, id = s->id](short ev) { on_io(id, ev); });
    if (o.verbosity.verbose) {
      TlsSession* tls = s->sock->tls();
      std::string how = tls ? " (TLS, " + tls->peer_identity() + ", " + tls->suite() + ")" : "";
      ctx.say(ctx.program + ": session from " + s->name + how);
    }
    sessions.emplace(s->id, std::move(s));
  }

  void drain_buffered() {
    std::vector<std::uint64_t> ids;
    for (auto& [id, s] : sessions)
      if (s->reading && s->sock->has_buffered_input()) ids.push_back(id);
    for (auto id : ids) on_io(id, POLLIN);
    for (auto& [id, s] : sessions)
      if (s->reading && s->sock->has_buffered_input()) r.request_pass();
  }

  void close_session(std::uint64_t id, const std::optional<Error>& why) {
    auto it = sessions.find(id);
    if (it == sessions.end()) return;
    Session& s = *it->second;
    if (why && !o.verbosity.quiet) {
      std::string m = why->message();  // named after the session already, or not
      ctx.say(ctx.program + ": " + (m.rfind(s.name, 0) == 0 ? m : s.name + ": " + m));
    }
    if (!s.refused) summary(s);
    r.unwatch(s.watch);
    sessions.erase(it);
  }

  void summary(Session& s, bool so_far = false) {
    if (o.verbosity.quiet && !so_far) return;
    const char* state = so_far ? "so far" : "ended";
    if (o.proto == Proto::native) {
      out_line(fmt::format("session {} {}: {} probes answered, {} acknowledged", s.name, state, s.pings, s.acks));
      if (s.dropped) out_line(fmt::format("  {} probes dropped: more were held back (--reply-delay, --turnaround) than it holds", s.dropped));
      if (s.acks > 0) {
        out_line("  " + brief("rtt the client measured (our turnaround removed)", s.client_rtt));
        out_line("  " + brief("rtt seen from here (pong to ack3, the client's turnaround removed)", s.own_rtt));
        out_line("  " + brief("our turnaround", s.turnaround));
        out_line(fmt::format("  RTT/2 p50 {} (not one-way delay: that needs synchronised clocks)",
                             fmt_ns(static_cast<double>(s.client_rtt.histogram().percentile(50)) / 2)));
      }
    } else {
      out_line(fmt::format("fastSocket session {} {}: {} messages, {} client acks", s.name, state, s.pings, s.acks));
      if (s.acks > 0) {
        out_line("  " + brief("T1, the client's send_and_ack_time (our turnaround included)", s.t1));
        out_line("  " + brief("rtt with our turnaround removed, T1 - (s2 - s1)", s.corrected));
        out_line("  " + brief("fastSocket's formula T1 - T2/2", s.formula) +
                 fmt::format(", {} negative", s.formula.negatives()));
        out_line(fmt::format("  RTT/2 p50 {} (not one-way delay: that needs synchronised clocks)",
                             fmt_ns(static_cast<double>(s.corrected.histogram().percentile(50)) / 2)));
      }
      if (s.forgotten) out_line(fmt::format("  {} messages never acknowledged by the client were forgotten", s.forgotten));
    }
  }

  void on_io(std::uint64_t id, short ev) {
    auto it = sessions.find(id);
    if (it == sessions.end()) return;
    Session& s = *it->second;
    if (ev & POLLOUT) {
      if (!flush(s)) return;
    }
    if (!(ev & (POLLIN | POLLHUP | POLLERR)) || !s.reading) return;
    long n = s.in.read_from(*s.sock);
    std::int64_t now = mono_ns();
    on_read(s, n, now);
  }

  // One read's result for session `s` (which it may close).
  void on_read(Session& s, long n, std::int64_t now) {
    std::uint64_t id = s.id;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (auto e = s.sock->failure()) return close_session(id, *e);
      return close_session(id, errno_error(ErrorKind::disconnected, s.name, errno));
    }
    if (!tls && s.pings == 0 && s.acks == 0 && s.in.size() > 0 && s.in.data()[0] == 0x16) {
      // A TLS ClientHello: a client with keys, and we have none. Refused in our own terms, and
      // answered with an ERROR frame, which its TLS reports as "does not speak TLS".
      Error e = make_error(ErrorKind::auth, "from " + s.name, "a TLS handshake, but this responder has no keys (see dl-security(7))");
      e.id = "no-keys";
      refusals.refused(s.name, e);
      s.refused = true;
      send_error_frame(s, e);
      return close_session(id, std::nullopt);
    }
    if (n == 0) {
      if (s.held.empty()) return close_session(id, std::nullopt);
      // What --reply-delay still holds has "left" the client already: let it arrive first.
      s.eof = true;
      s.reading = false;
      r.set_events(s.watch, static_cast<short>(s.want_write ? POLLOUT : 0));
      return;
    }
    std::optional<Error> err = o.proto == Proto::native ? handle_frames(s, now) : handle_lines(s, now);
    if (err) {
      if (o.proto == Proto::native) send_error_frame(s, *err);
      return close_session(id, err);
    }
    flush(s);
  }

  // A native ERROR frame naming `e`, best effort, before the session is closed.
  void send_error_frame(Session& s, const Error& e) {
    std::string p = frame::encode_error_payload(e.id.empty() ? "protocol" : e.id, e.message());
    std::vector<std::uint8_t> f(frame::kHeaderSize + p.size());
    std::memcpy(f.data() + frame::kHeaderSize, p.data(), p.size());
    frame::encode(f.data(), frame::Type::error, 0, 0, std::span(f).subspan(frame::kHeaderSize));
    s.out.append(f.data(), f.size());
    (void)s.out.flush(*s.sock);
  }

  bool flush(Session& s) {
    auto st = s.out.flush(*s.sock);
    if (!st) {
      close_session(s.id, s.eof ? std::nullopt : std::optional<Error>(st.error()));
      return false;
    }
    bool need = !s.out.drained(*s.sock);
    // Backpressure: a client that does not read its pongs is not read from either.
    bool read = !s.eof && s.out.size() < (4u << 20) && can_hold(s);
    if (need != s.want_write || read != s.reading) {
      s.want_write = need;
      s.reading = read;
      r.set_events(s.watch, static_cast<short>((read ? POLLIN : 0) | (need ? POLLOUT : 0)));
    }
    return true;
  }

  // Answers every whole frame in the buffer; PONGs are built in place and written together.
  std::optional<Error> handle_frames(Session& s, std::int64_t t_in) {
    std::optional<Error> err;
    while (s.in.size() > 0) {
      auto d = frame::decode(std::span<const std::uint8_t>(s.in.data(), s.in.size()), kMaxProbe);
      if (d.status == frame::Status::need_more) {
        break;  // the buffer grows as bytes arrive, never on a length's say-so
      }
      if (d.status == frame::Status::bad) return frame::decode_error(d, kMaxProbe, s.name);
      std::uint8_t* f = s.in.data();
      if (d.header.type != frame::Type::data) {
        if (d.header.type == frame::Type::error)
          return frame::decode_error_payload(std::span<const std::uint8_t>(f + frame::kHeaderSize, d.header.length), s.name);
        return protocol_error("not-dlping", s.name, "this is a dlping responder; it takes only dlping probes", false);
      }
      if (auto e = answer(s, f, d.frame_size, t_in, nullptr)) return e;
      s.in.consume(d.frame_size);
    }
    return err;
  }

  // One frame: a PING is answered (now, or held for the delays), an ACK3 is counted.
  std::optional<Error> answer(Session& s, std::uint8_t* f, std::size_t size, std::int64_t t_in, const SocketAddress* peer) {
    auto payload = std::span<std::uint8_t>(f + frame::kHeaderSize, size - frame::kHeaderSize);
    auto st = decode_stamps(payload);
    if (!st) {
      Error e = st.error();
      e.context = s.name;
      return e;
    }
    bool delayed = o.reply_delay_s > 0 || (st->kind == Kind::ping && o.turnaround_s > 0);
    if (delayed && peer && !can_hold(s)) {
      ++s.dropped;
      return std::nullopt;
    }
    if (st->kind == Kind::ping) {
      ++s.pings;
      if (o.reply_delay_s > 0 || o.turnaround_s > 0) {
        hold(s, std::vector<std::uint8_t>(f, f + size), t_in, peer);
        return std::nullopt;
      }
      turn_into_pong(payload.data(), t_in, mono_ns());
      frame::encode(f, frame::Type::data, st->seq, 0, payload);
      send(s, f, size, peer);
      return std::nullopt;
    }
    if (st->kind == Kind::ack3) {
      if (o.reply_delay_s > 0) {
        hold(s, std::vector<std::uint8_t>(f, f + size), t_in, peer, true);
        return std::nullopt;
      }
      count_ack3(s, *st, t_in);
      return std::nullopt;
    }
    return protocol_error("unexpected-kind", s.name, "a client sends PINGs and ACK3s only", false);
  }

  void count_ack3(Session& s, const Stamps& a, std::int64_t t_in) {
    {
      const Stamps* st = &a;
      ++s.acks;
      std::int64_t own = responder_rtt(*st, t_in);
      s.client_rtt.add(st->rtt);
      s.own_rtt.add(own);
      s.turnaround.add(stamp_sub(st->t2, st->t1));
      if (o.verbosity.verbose) {
        out_line(fmt::format("ack3 from {}: seq={} client rtt={} our rtt={} our turnaround={}", s.name, st->seq,
                             fmt_ns(static_cast<double>(st->rtt)), fmt_ns(static_cast<double>(own)),
                             fmt_ns(static_cast<double>(stamp_sub(st->t2, st->t1)))));
      }
    }
  }

  void send(Session& s, const void* p, std::size_t n, const SocketAddress* peer) {
    if (peer) {
      // A reply the kernel will not take now is a lost probe: udp never waits.
      ::sendto(udp.get(), p, n, MSG_DONTWAIT, peer->get(), peer->length);
      return;
    }
    if (s.out.empty()) {
      ssize_t w = s.sock->send(p, n);
      if (w == static_cast<ssize_t>(n)) return;
      if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          s.out.append(p, n);  // the flush that follows reports the error
          return;
        }
        w = 0;
      }
      s.out.append(static_cast<const std::uint8_t*>(p) + w, n - static_cast<std::size_t>(w));
      return;
    }
    s.out.append(p, n);
  }

  // ---- delays
  // A stream stops being read when its hold is full; udp cannot be stopped, so what comes on
  // is dropped (lost, as a full queue on the path would): a flood of probes at a responder
  // with --reply-delay once held every one of them, some 450 MB a second.
  bool can_hold(const Session& s) const { return s.held.size() < kMaxHeld && s.held_bytes < kMaxHeldBytes; }

  void hold(Session& s, std::vector<std::uint8_t> bytes, std::int64_t t_in, const SocketAddress* peer,
            bool ack = false) {
    Held h;
    h.ack = ack;
    h.bytes = std::move(bytes);
    h.t1 = t_in;
    if (o.reply_delay_s > 0) {
      h.stage = 0;
      h.due = t_in + to_ns(o.reply_delay_s);
    } else {
      h.stage = 1;
      h.due = t_in + to_ns(o.turnaround_s);
    }
    if (peer) h.peer = *peer;
    s.held_bytes += h.bytes.size();
    s.held.push_back(std::move(h));
    arm(s);
  }

  void arm(Session& s) {
    std::int64_t when = INT64_MAX;
    for (auto& h : s.held) when = std::min(when, h.due);
    if (when == INT64_MAX) {
      s.timer->cancel();
    } else {
      s.timer->arm(Clock::time_point(std::chrono::nanoseconds(when)));
    }
  }

  void release_held(Session& s) {
    std::int64_t now = mono_ns();
    for (auto& h : s.held) {
      if (h.stage != 0 || h.due > now) continue;
      // The message "arrives" now: the delay so far was path, not turnaround.
      h.t1 = mono_ns();
      if (h.ack) {
        h.stage = 2;  // done: counted below, in order
        continue;
      }
      h.stage = 1;
      h.due = h.t1 + to_ns(o.turnaround_s);
    }
    std::deque<Held> keep;
    while (!s.held.empty()) {
      Held h = std::move(s.held.front());
      s.held.pop_front();
      bool due = h.stage == 1 && h.due <= mono_ns();
      if (h.stage == 2 || due) s.held_bytes -= h.bytes.size();
      if (h.stage == 2) {
        on_held_ack(s, h);
      } else if (due) {
        const SocketAddress* peer = s.sock ? nullptr : &h.peer;
        if (o.proto == Proto::native) {
          std::uint8_t* f = h.bytes.data();
          auto payload = std::span<std::uint8_t>(f + frame::kHeaderSize, h.bytes.size() - frame::kHeaderSize);
          turn_into_pong(payload.data(), h.t1, mono_ns());
          frame::encode(f, frame::Type::data, get_u64(f + 8), 0, payload);
          send(s, f, h.bytes.size(), peer);
        } else {
          std::string id(h.bytes.begin(), h.bytes.end());
          ack_message(s, id, h.t1);
        }
      } else {
        keep.push_back(std::move(h));
      }
    }
    s.held = std::move(keep);
    if (s.sock) {
      if (!flush(s)) return;  // closed the session
      if (s.eof && s.held.empty()) return close_session(s.id, std::nullopt);
    }
    arm(s);
  }

  void on_held_ack(Session& s, const Held& h) {
    if (o.proto == Proto::native) {
      auto st = decode_stamps(std::span<const std::uint8_t>(h.bytes).subspan(frame::kHeaderSize));
      if (st) count_ack3(s, *st, h.t1);
    } else {
      auto f = fastsocket::decode_line(std::string_view(reinterpret_cast<const char*>(h.bytes.data()), h.bytes.size()));
      if (f) client_ack(s, *f, h.t1);
    }
  }

  // ---- fastSocket
  std::optional<Error> handle_lines(Session& s, std::int64_t t_in) {
    std::string out;
    while (s.in.size() > 0) {
      auto* p = reinterpret_cast<const char*>(s.in.data());
      const void* nl = std::memchr(p, '\n', s.in.size());
      if (!nl) {
        if (s.in.size() >= fastsocket::kMaxLine)
          return protocol_error("line-too-long", s.name, "a fastSocket line longer than 64 KiB", false);
        break;
      }
      std::size_t len = static_cast<const char*>(nl) - p;
      auto f = fastsocket::decode_line(std::string_view(p, len));
      if (!f) {
        Error e = f.error();
        e.context = s.name;
        return e;
      }
      if (f->type == fastsocket::Type::message) {
        ++s.pings;
        if (o.reply_delay_s > 0 || o.turnaround_s > 0) {
          hold(s, std::vector<std::uint8_t>(f->id_json.begin(), f->id_json.end()), t_in, nullptr);
        } else {
          ack_message(s, f->id_json, t_in);
        }
      } else if (f->has_time) {
        if (o.reply_delay_s > 0) {
          hold(s, std::vector<std::uint8_t>(p, p + len), t_in, nullptr, true);
        } else {
          client_ack(s, *f, t_in);
        }
      } else {
        return protocol_error("unexpected-frame", s.name, "a fastSocket client does not send server acks", false);
      }
      s.in.consume(len + 1);
    }
    return std::nullopt;
  }

  void ack_message(Session& s, const std::string& id_json, std::int64_t s1) {
    std::string line;
    fastsocket::append_server_ack(line, id_json);
    std::int64_t s2 = mono_ns();
    send(s, line.data(), line.size(), nullptr);
    // A client that never acks (some) messages: forget the oldest, by count and by bytes, so
    // neither the map nor the order queue (which also holds ids acked out of order) grows.
    while (!s.sent_order.empty() &&
           (s.sent_order.size() >= kMaxPendingIds || s.order_bytes + id_json.size() > kMaxPendingBytes)) {
      if (s.sent.erase(s.sent_order.front())) ++s.forgotten;
      s.order_bytes -= s.sent_order.front().size();
      s.sent_order.pop_front();
    }
    if (s.sent.insert_or_assign(id_json, Session::Sent{s1, s2}).second) {
      s.sent_order.push_back(id_json);
      s.order_bytes += id_json.size();
    }
  }

  void client_ack(Session& s, const fastsocket::Frame& f, std::int64_t s5) {
    auto it = s.sent.find(f.id_json);
    if (it == s.sent.end()) {
      if (o.verbosity.verbose) out_line(fmt::format("fastSocket ack from {} for an unknown id {}", s.name, f.id_json));
      return;
    }
    Session::Sent sent = it->second;
    s.sent.erase(it);
    // sent_order keeps the id until it reaches the front; erase() of a missing key is harmless.
    while (!s.sent_order.empty() && !s.sent.count(s.sent_order.front())) {
      s.order_bytes -= s.sent_order.front().size();
      s.sent_order.pop_front();
    }
    ++s.acks;
    std::int64_t t1 = f.send_and_ack_time_ns, t2 = s5 - sent.s1;
    std::int64_t formula = stamp_sub(t1, t2 / 2), corrected = stamp_sub(t1, sent.s2 - sent.s1);  // t1: the peer's
    s.t1.add(t1);
    s.corrected.add(corrected);
    s.formula.add(formula);
    if (o.verbosity.verbose) {
      out_line(fmt::format("fastSocket {} id={} T1={} T2={} rtt={} fastSocket latency_ns={}", s.name, f.id_json,
                           t1, t2, corrected, formula));
    }
  }

  // ---- udp
  void on_udp() {
    Session& s = *udp_session;
    for (int k = 0; k < 64; ++k) {
      SocketAddress peer;
      peer.length = sizeof peer.storage;
      s.in.reserve_total(65536);
      std::uint8_t* buf = s.in.data();
      ssize_t n = ::recvfrom(udp.get(), buf, 65536, 0, reinterpret_cast<sockaddr*>(&peer.storage), &peer.length);
      std::int64_t now = mono_ns();
      if (n < 0) return;  // EAGAIN, or an ICMP error about an earlier reply: nothing to do
      auto d = frame::decode(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)), kMaxProbe);
      if (d.status != frame::Status::frame || d.frame_size != static_cast<std::size_t>(n) ||
          d.header.type != frame::Type::data) {
        if (o.verbosity.verbose) ctx.say(fmt::format("{}: ignored a datagram from {} that is not a dlping probe", ctx.program, peer.to_string()));
        continue;
      }
      s.name = peer.to_string();
      if (auto e = answer(s, buf, d.frame_size, now, &peer)) {
        if (o.verbosity.verbose) ctx.say(ctx.program + ": " + e->message());
      }
    }
  }

  // With a single client (the usual measurement), wait for its next message in recv(2) itself
  // rather than in the reactor and then recv: one system call less per round trip, as
  // sockperf's server does. The wait times out after 20 ms, and every kDirectRounds messages a
  // reactor round runs anyway, so a second client, timers and signals wait at most that long.
  static constexpr int kDirectRounds = 256;
  int direct_rounds = 0;

  bool direct_round() {
    if (o.busy_poll || t.udp || tls || sessions.size() != 1 || direct_rounds >= kDirectRounds) return false;
    Session& s = *sessions.begin()->second;
    if (!s.reading || s.eof || !s.out.empty() || !s.held.empty()) return false;
    ++direct_rounds;
    long n = s.in.read_from(s.sock->fd(), false, true);
    std::int64_t now = mono_ns();
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      direct_rounds = kDirectRounds;
      return true;
    }
    on_read(s, n, now);
    return true;
  }

  int run() {
    std::int64_t deadline = std::isinf(o.deadline_s) ? INT64_MAX : mono_ns() + to_ns(o.deadline_s);
    Timer end(r, [this] { stopping = true; });
    if (deadline != INT64_MAX) end.arm(Clock::time_point(std::chrono::nanoseconds(deadline)));
    bool by_signal = false;
    while (!stopping) {
      if (direct_round()) continue;
      direct_rounds = 0;
      r.run_once();
    }
    by_signal = mono_ns() < deadline;
    while (!sessions.empty()) close_session(sessions.begin()->first, std::nullopt);
    if (udp_session && udp_session->pings > 0) {
      udp_session->name = bound;
      summary(*udp_session);
    }
    return by_signal ? exit_code(ErrorKind::cancelled) : 0;
  }
};

Responder::Responder(const DlpingOptions& o, ToolContext& ctx, Reactor& r, Target t, std::shared_ptr<TlsConfig> tls)
    : impl_(std::make_unique<Impl>(o, ctx, r, std::move(t), std::move(tls))) {}
Responder::~Responder() = default;
Status Responder::start() { return impl_->start(); }
int Responder::run() { return impl_->run(); }
void Responder::stop() { impl_->stopping = true; }
void Responder::interim() {
  for (auto& [id, s] : impl_->sessions) impl_->summary(*s, true);
  if (impl_->udp_session && impl_->udp_session->pings > 0) {
    impl_->udp_session->name = impl_->bound;
    impl_->summary(*impl_->udp_session, true);
  }
}

}  // namespace dl::ping
