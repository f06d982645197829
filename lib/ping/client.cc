#include "lib/ping/client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <random>
#include <fmt/format.h>

#include "lib/base/atomic_file.h"
#include "lib/base/clock.h"
#include "lib/base/random.h"
#include "lib/base/units.h"
#include "lib/codec/fastsocket.h"
#include "lib/codec/frame.h"
#include "lib/codec/ping_payload.h"
#include "lib/net/net.h"
#include "lib/net/tls_gate.h"
#include "lib/ping/svg_plot.h"

namespace dl::ping {

namespace {
constexpr std::size_t kBookSlots = 1 << 16;
constexpr std::size_t kMaxPlotPoints = 1 << 20;
// Probe bytes the socket has not taken yet, beyond which no new probe is sent: a responder
// that stops reading must not make us queue a probe per interval (or per --timeout, in a
// flood) without bound. The schedule waits for the socket instead (POLLOUT).
constexpr std::size_t kMaxQueued = 256 << 10;
std::int64_t to_ns(double s) { return s >= 9e9 ? INT64_MAX / 4 : static_cast<std::int64_t>(s * 1e9); }
}  // namespace

struct Client::Impl {
  const DlpingOptions& o;
  ToolContext& ctx;
  Reactor& r;
  Target t;
  std::unique_ptr<TlsSocket> sock;  // udp, TCP or unix; through TLS with keys
  std::shared_ptr<TlsConfig> tls;
  bool heard = false;  // any byte from the peer yet
  Reactor::Id watch = 0;
  Timer tick;
  std::int64_t tick_at = INT64_MAX;  // when `tick` fires, while armed
  InBuffer in;
  OutBuffer out;
  bool want_write = false;
  std::uint32_t max_payload = 0;

  // Run state.
  bool stopping = false, finished = false;
  std::optional<Error> error;
  std::int64_t run_start = 0, deadline = INT64_MAX;
  RunFigures figures;
  std::FILE* csv = nullptr;
  std::vector<PlotPoint> plot;
  std::int64_t first_probe_ns = -1;
  bool refused_said = false;

  // Phase state.
  struct Phase {
    std::uint32_t size = 0;
    bool warmup = false;
    std::uint64_t count = 0;  // 0 = unbounded
  };
  std::vector<Phase> phases;
  std::size_t phase_i = 0;
  std::unique_ptr<ProbeBook> book;
  PhaseFigures* fig = nullptr;  // null in a warm-up phase
  bool sending = false;
  std::uint64_t phase_sent = 0;
  std::uint64_t unknown_ids = 0;  // fastSocket acks for ids we never sent
  std::uint64_t next_seq = 1;
  std::int64_t next_send = 0, phase_start = 0;

  // Native probe template: frame header + payload, padding included.
  std::vector<std::uint8_t> probe;
  std::uint8_t ack3[frame::kHeaderSize + kPayloadHeader];

  // fastSocket: a message's seq rides in its id's last 48 bits (the id stays a valid uuid4, with
  // 74 random bits), so acks are matched without a map that could grow. Per ring slot: the
  // id's first 8 bytes (to refuse ids we did not send) and when the message was written.
  struct FsSent {
    std::uint64_t seq = 0, tag = 0;
    std::int64_t written = 0;
  };
  std::vector<FsSent> fs_sent = std::vector<FsSent>(kBookSlots);
  std::mt19937_64 rng;
  std::string payload_json, line, line_id;

  Impl(const DlpingOptions& o_, ToolContext& c, Reactor& r_, Target t_, std::shared_ptr<TlsConfig> tls_)
      : o(o_), ctx(c), r(r_), t(std::move(t_)), tls(std::move(tls_)), tick(r_, [this] { on_tick(); }) {
    rng.seed(secure_random_u64());
  }

  ~Impl() {
    if (watch) r.unwatch(watch);
    if (csv) std::fclose(csv);
  }

  void fail(Error e) {
    if (!error) error = std::move(e);
    finished = true;
  }

  void say_out(const std::string& s) {
    std::string text = s + "\n";
    [[maybe_unused]] auto n = ::write(ctx.stdout_fd, text.data(), text.size());
  }

  // ---- connecting
  bool connect() {
    figures.target = t.text;
    figures.transport = t.transport();
    figures.proto = o.proto == Proto::native ? "native" : "fastsocket";
    std::int64_t t0 = mono_ns();
    if (t.udp) {
      SocketAddress peer;
      auto f = udp_connect(t, &peer);
      if (!f) return fail(f.error()), false;
      sock = std::make_unique<TlsSocket>(std::move(*f));
      figures.setup_s = -1;
      return true;
    }
    auto addrs = resolve(t.endpoint, false);
    if (!addrs) return fail(addrs.error()), false;
    std::optional<Error> last;
    // -w bounds the connection attempt too: `dlping -w 1` at a host that drops SYNs must not
    // take the 10 s connect timeout.
    double wait_s = std::min(o.connect_timeout_s, o.deadline_s);
    auto give_up = deadline_after(Clock::now(), wait_s);
    for (const SocketAddress& a : *addrs) {
      t0 = mono_ns();
      auto f = start_connect(a);
      if (!f) {
        last = f.error();
        continue;
      }
      int done = 0;  // 1 connected, -1 failed
      Reactor::Id w = r.watch(f->get(), POLLOUT, [&](short) {
        auto st = finish_connect(f->get(), a);
        if (st) {
          done = 1;
        } else {
          last = st.error();
          done = -1;
        }
      });
      while (done == 0 && !stopping && Clock::now() < give_up) {
        r.run_once(std::chrono::duration_cast<Clock::duration>(give_up - Clock::now()));
      }
      r.unwatch(w);
      if (done == 1 && tls) {
        // Keys: the handshake is part of setting up (and of its time); a refusal is final.
        auto s = secure(std::move(*f), a, give_up);
        if (!s) {
          if (stopping) return false;
          return fail(s.error()), false;
        }
        figures.setup_s = static_cast<double>(mono_ns() - t0) / 1e9;
        sock = std::move(*s);
        return true;
      }
      if (done == 1) {
        figures.setup_s = static_cast<double>(mono_ns() - t0) / 1e9;
        sock = std::make_unique<TlsSocket>(std::move(*f));
        return true;
      }
      if (stopping) return false;
      if (done == 0) last = make_error(ErrorKind::timeout, "connect " + a.to_string(), "no answer within " + human_duration(wait_s));
    }
    fail(last ? *last : make_error(ErrorKind::connect, "connect " + t.text, "no address"));
    return false;
  }

  Result<std::unique_ptr<TlsSocket>> secure(Fd f, const SocketAddress& a, Clock::time_point give_up) {
    std::unique_ptr<TlsSocket> secured;
    std::optional<Error> refused;
    TlsGateOptions go;
    go.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now());
    TlsGate gate(
        r, tls, go, [&](std::unique_ptr<TlsSocket> s, const SocketAddress&) { secured = std::move(s); },
        [&](const Error& e, const SocketAddress&) { refused = e; });
    gate.admit(std::move(f), a, t.endpoint.kind == Endpoint::Kind::tcp ? t.endpoint.host : std::string());
    while (!secured && !refused && !stopping) r.run_once(std::chrono::milliseconds(100));
    if (secured && !tls->psk()) {
      // TLS 1.3 lets a dialer finish before the responder has checked its certificate: wait
      // for the verdict (the responder's ticket or its alert), or a refused dlping would say
      // "connected" and print statistics before its error. (A pre-shared key is checked
      // before the handshake ends.)
      TlsSession* s = secured->tls();
      TlsIo v = s->await_acceptance();
      Reactor::Id w = r.watch(secured->fd(), POLLIN, [&](short) { v = s->await_acceptance(); });
      while (v == TlsIo::want_read && !stopping && Clock::now() < give_up) {
        r.run_once(std::chrono::milliseconds(100));
      }
      r.unwatch(w);
      if (v == TlsIo::ok) return secured;
      if (stopping) return make_error(ErrorKind::cancelled, "TLS handshake with " + a.to_string(), "interrupted");
      if (v == TlsIo::want_read) {
        return make_error(ErrorKind::timeout, "TLS handshake with " + a.to_string(), "no verdict on our certificate in time");
      }
      if (v != TlsIo::failed) {
        return make_error(ErrorKind::disconnected, "tls " + a.to_string(), "the responder closed the connection after the handshake");
      }
      return s->error();
    }
    if (secured) return secured;
    if (refused) return *refused;
    return make_error(ErrorKind::cancelled, "TLS handshake with " + a.to_string(), "interrupted");
  }

  // ---- phases
  void plan() {
    for (std::uint32_t s : o.sizes) {
      if (o.warmup > 0) phases.push_back({s, true, o.warmup});
      phases.push_back({s, false, o.count});
    }
    std::uint32_t biggest = *std::max_element(o.sizes.begin(), o.sizes.end());
    max_payload = std::max<std::uint32_t>(biggest, kPayloadHeader) + 64;
  }

  void start_phase() {
    const Phase& p = phases[phase_i];
    book = std::make_unique<ProbeBook>(kBookSlots);
    std::fill(fs_sent.begin(), fs_sent.end(), FsSent{});
    fig = nullptr;
    if (!p.warmup) {
      figures.phases.emplace_back();
      fig = &figures.phases.back();
      fig->size = p.size;
      fig->rate = RateTracker(o.min_rate);
      fig->has_turnaround = o.proto == Proto::native;
      fig->has_fastsocket = o.proto == Proto::fastsocket;
    }
    if (o.proto == Proto::native) {
      probe.assign(frame::kHeaderSize + std::max<std::size_t>(p.size, kPayloadHeader), 0);
      // Padding: a byte pattern, so a responder that mangles it is caught by the checksum.
      for (std::size_t i = frame::kHeaderSize + kPayloadHeader; i < probe.size(); ++i)
        probe[i] = static_cast<std::uint8_t>(i * 31 + 7);
      if (fig) fig->wire_bytes = static_cast<std::uint32_t>(probe.size());
    } else {
      payload_json = "\"" + std::string(p.size, 'x') + "\"";
      std::string sample;
      fastsocket::append_message(sample, "\"" + std::string(36, '0') + "\"", payload_json);
      if (fig) fig->wire_bytes = static_cast<std::uint32_t>(sample.size());
    }
    phase_sent = 0;
    unknown_ids = 0;
    phase_start = mono_ns();
    next_send = phase_start;
    sending = !stopping;
    schedule();
  }

  void fill_figures() {
    if (!fig) return;
    fig->sent = book->sent_count();
    fig->received = book->received();
    fig->lost = book->lost();
    fig->duplicated = book->duplicates();
    fig->out_of_order = book->out_of_order();
    fig->timeouts = book->timeouts();
    fig->late = book->late();
    fig->unknown = book->unknown() + unknown_ids;
    fig->duration_s = static_cast<double>(mono_ns() - phase_start) / 1e9;
  }

  void end_phase() {
    fill_figures();
    fig = nullptr;
    ++phase_i;
    if (phase_i >= phases.size() || stopping) {
      finished = true;
      return;
    }
    start_phase();
  }

  bool may_send_more() const {
    const Phase& p = phases[phase_i];
    if (!sending) return false;
    if (p.count > 0 && phase_sent >= p.count) return false;
    return true;
  }

  // Room for another probe: udp never queues (the kernel drops), a stream only up to kMaxQueued.
  bool can_send() const { return t.udp || out.size() < kMaxQueued; }

  std::uint64_t in_flight_cap() const {
    if (o.flood) return o.window;
    return kBookSlots / 2;  // never let the ring wrap over probes still out
  }

  // Sends what is due, expires what timed out, ends the phase when it is over, re-arms.
  void schedule() {
    if (finished) return;
    std::int64_t now = mono_ns();
    if (now >= deadline) sending = false;
    std::uint64_t expired = book->expire(now, to_ns(o.timeout_s));
    if (expired && o.verbosity.verbose) ctx.say(fmt::format("{}: {} probe(s) unanswered after {}", ctx.program, expired, human_duration(o.timeout_s)));
    if (o.flood) {
      while (may_send_more() && book->outstanding() < in_flight_cap() && can_send()) send_probe(now);
    } else if (may_send_more() && now >= next_send && book->outstanding() < in_flight_cap() && can_send()) {
      send_probe(now);
      next_send += to_ns(o.interval_s);
      if (next_send < now) next_send = now + to_ns(o.interval_s);  // never burst to catch up
    }
    if (!may_send_more()) sending = false;
    flush();
    if (finished) return;
    if (!sending && book->outstanding() == 0) {
      end_phase();
      return;
    }
    std::int64_t when = book->next_expiry(to_ns(o.timeout_s));
    // A probe held back by a full socket waits for POLLOUT (on_io), not for a timer that
    // would fire at once, again and again.
    if (sending && !o.flood && can_send()) when = std::min(when, next_send);
    when = std::min(when, deadline);
    // A timer armed earlier than needed only costs a wasted wake-up; re-arming it for every
    // probe would cost map operations per round trip. So only ever pull it forward.
    if (when == INT64_MAX) {
      if (tick.armed()) return;  // fires, finds nothing due, and then cancels
    } else if (!tick.armed() || when < tick_at) {
      tick_at = std::max(when, now);
      tick.arm(Clock::time_point(std::chrono::nanoseconds(tick_at)));
    }
  }

  void on_tick() {
    tick_at = INT64_MAX;
    schedule();
  }

  void send_probe(std::int64_t now) {
    std::uint64_t seq = next_seq++;
    ++phase_sent;
    if (first_probe_ns < 0) first_probe_ns = now;
    if (o.proto == Proto::native) {
      std::int64_t t0 = mono_ns();
      auto payload = std::span(probe).subspan(frame::kHeaderSize);
      encode_stamps(payload.data(), Stamps{Kind::ping, seq, t0});
      frame::encode(probe.data(), frame::Type::data, seq, 0, payload);
      book->sent(seq, t0);
      send_bytes(probe.data(), probe.size());
    } else {
      std::uint8_t b[16];
      std::uint64_t r1 = rng(), r2 = rng();
      std::memcpy(b, &r1, 8);
      std::memcpy(b + 8, &r2, 2);
      b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | 0x40);  // as uuid4_text() will
      b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);
      for (int k = 0; k < 6; ++k) b[10 + k] = static_cast<std::uint8_t>(seq >> (8 * (5 - k)));
      std::int64_t c0 = mono_ns();
      line.clear();
      line_id = "\"" + fastsocket::uuid4_text(std::span<const std::uint8_t, 16>(b)) + "\"";
      fastsocket::append_message(line, line_id, payload_json);
      book->sent(seq, c0);
      send_bytes(line.data(), line.size());
      flush();
      std::uint64_t tag;
      std::memcpy(&tag, b, 8);
      fs_sent[seq & (kBookSlots - 1)] = FsSent{seq, tag, mono_ns()};
    }
  }

  void send_bytes(const void* p, std::size_t n) {
    if (t.udp) {
      if (::send(sock->fd(), p, n, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED && errno != ENOBUFS) {
        fail(errno_error(ErrorKind::io, "send " + t.text, errno));
      }
      return;  // a datagram the kernel would not take is a lost probe, as on any network
    }
    out.append(p, n);
  }

  void flush() {
    if (t.udp || out.drained(*sock)) return;
    auto st = out.flush(*sock);
    if (!st) return fail(Error(st.error()));
    bool need = !out.drained(*sock);
    if (need != want_write) {
      want_write = need;
      r.set_events(watch, static_cast<short>(POLLIN | (need ? POLLOUT : 0)));
    }
  }

  // ---- receiving
  void on_io(short ev) {
    if (ev & POLLOUT) flush();
    if (!(ev & (POLLIN | POLLHUP | POLLERR))) {
      if (!finished) schedule();  // the socket took what waited: probes held back may go
      return;
    }
    for (int rounds = 0; rounds < 64 && !finished; ++rounds) {
      long n = t.udp ? in.read_from(sock->fd(), true) : in.read_from(*sock);
      std::int64_t t3 = mono_ns();
      if (!take(n, t3)) break;
      // Drained, most likely: back to poll (bytes held inside TLS raise no poll event: not yet).
      if (!t.udp && static_cast<std::size_t>(n) < 4096 && !sock->has_buffered_input()) break;
    }
    if (!finished) schedule();
  }

  // Handles one read's result; false when there is nothing more to read now.
  bool take(long n, std::int64_t t3) {
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
      if (t.udp && errno == ECONNREFUSED) {
        if (!refused_said && !o.verbosity.quiet) ctx.say(ctx.program + ": " + t.text + ": Connection refused (nobody answers on that port)");
        refused_said = true;
        return true;
      }
      if (auto e = sock->failure()) return fail(*e), false;
      fail(errno_error(ErrorKind::disconnected, t.text, errno));
      return false;
    }
    if (!heard && !tls && !t.udp && is_tls_alert({in.data(), in.size()})) {
      // A TLS alert where the first reply should be: the responder has keys and we have none.
      return fail(listener_needs_keys(t.text)), false;
    }
    if (n > 0) heard = true;
    if (n == 0) {
      if (t.udp) return true;
      std::uint64_t answered = book ? book->received() : 0;
      for (auto& p : figures.phases) answered += p.received;
      fail(make_error(ErrorKind::disconnected, t.text,
                      answered ? "the responder closed the connection"
                               : "the peer closed the connection before any reply (a dlping -l with the same --proto?)"));
      return false;
    }
    if (o.proto == Proto::native) {
      parse_frames(t3);
    } else {
      parse_lines(t3);
    }
    return !finished;
  }

  // --flood with one probe in flight: wait for the reply in recv(2) itself, as sockperf does,
  // instead of in the reactor and then recv (one system call less per round trip). The socket
  // is blocking with a short receive timeout; every kDirectRounds replies, and whenever the
  // wait times out, one reactor round handles timers and signals.
  static constexpr int kDirectRounds = 256;
  bool direct = false;
  int direct_rounds = 0;

  void setup_direct() {
    if (!o.flood || o.window != 1 || t.udp || o.busy_poll || tls) return;  // TLS reads its own way
    int flags = ::fcntl(sock->fd(), F_GETFL);
    if (flags < 0 || ::fcntl(sock->fd(), F_SETFL, flags & ~O_NONBLOCK) != 0) return;
    timeval tv{0, 20000};
    ::setsockopt(sock->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    direct = true;
  }

  bool direct_round() {
    if (!direct || direct_rounds >= kDirectRounds || !book || book->outstanding() == 0 || !out.empty()) return false;
    ++direct_rounds;
    long n = in.read_from(sock->fd(), false, true);
    std::int64_t t3 = mono_ns();
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      direct_rounds = kDirectRounds;  // quiet for 20 ms: let the reactor look at timers and signals
      return true;
    }
    take(n, t3);
    if (!finished) schedule();
    return true;
  }

  void parse_frames(std::int64_t t3) {
    while (!finished && in.size() > 0) {
      auto d = frame::decode(std::span<const std::uint8_t>(in.data(), in.size()), max_payload);
      if (d.status == frame::Status::need_more) {
        if (t.udp) {
          if (o.verbosity.verbose) ctx.say(ctx.program + ": " + t.text + ": ignored a truncated datagram");
          in.consume(in.size());
          return;
        }
        return;  // the buffer grows as bytes arrive, never on a length's say-so
      }
      if (d.status == frame::Status::bad) {
        if (t.udp) {  // a stray datagram: not worth ending the measurement for
          if (o.verbosity.verbose) ctx.say(ctx.program + ": " + t.text + ": ignored a bad datagram (" + d.id + ")");
          in.consume(in.size());
          return;
        }
        return fail(frame::decode_error(d, max_payload, t.text));
      }
      std::uint8_t* f = in.data();
      auto payload = std::span<const std::uint8_t>(f + frame::kHeaderSize, d.header.length);
      if (d.header.type == frame::Type::error) return fail(frame::decode_error_payload(payload, t.text));
      if (d.header.type != frame::Type::data) {
        return fail(protocol_error("unexpected-frame", t.text, "the peer is not a dlping responder (frame type " +
                                   std::to_string(static_cast<int>(d.header.type)) + ")", false));
      }
      auto s = decode_stamps(payload);
      if (!s) return fail(s.error());
      if (s->kind != Kind::pong) return fail(protocol_error("unexpected-kind", t.text, "expected a PONG", false));
      on_pong(*s, t3);
      in.consume(d.frame_size);
      if (t.udp && in.size() > 0) in.consume(in.size());  // one frame per datagram
    }
  }

  void on_pong(const Stamps& s, std::int64_t t3) {
    auto rep = book->reply(s.seq);
    if (rep.kind == ProbeBook::Kind::unknown || rep.kind == ProbeBook::Kind::duplicate) return;
    ClientView v = client_view(s, t3);
    // The ACK3 goes out first, with this very batch's flush: its t4 - t3 is the client's turnaround.
    Stamps a = s;
    a.kind = Kind::ack3;
    a.t3 = t3;
    a.t4 = mono_ns();
    a.rtt = v.rtt;
    auto payload = std::span(ack3).subspan(frame::kHeaderSize);
    encode_stamps(payload.data(), a);
    frame::encode(ack3, frame::Type::data, s.seq, 0, payload);
    send_bytes(ack3, sizeof ack3);
    if (!o.flood) flush();  // before any printing: the responder measures our turnaround too
    record(s.seq, rep, v.rtt, v.raw, v.turnaround, 0, t3);
  }

  void parse_lines(std::int64_t t3) {
    while (!finished && in.size() > 0) {
      auto* p = reinterpret_cast<const char*>(in.data());
      const void* nl = std::memchr(p, '\n', in.size());
      if (!nl) {
        if (in.size() >= fastsocket::kMaxLine || t.udp)
          return fail(protocol_error("line-too-long", t.text, "a fastSocket line longer than 64 KiB", false));
        return;
      }
      std::size_t len = static_cast<const char*>(nl) - p;
      auto f = fastsocket::decode_line(std::string_view(p, len));
      if (!f) {
        Error e = f.error();
        e.context = t.text;
        return fail(e);
      }
      if (f->type != fastsocket::Type::ack || f->has_time) {
        return fail(protocol_error("unexpected-frame", t.text, "a fastSocket server sends only acks", false));
      }
      const FsSent* sent = match_id(f->id_json);
      if (!sent) {
        ++unknown_ids;
      } else {
        auto rep = book->reply(sent->seq);
        if (rep.kind == ProbeBook::Kind::fresh || rep.kind == ProbeBook::Kind::late) {
          std::int64_t t1 = t3 - rep.sent_ns;
          line.clear();
          fastsocket::append_client_ack(line, f->id_json, t1);
          send_bytes(line.data(), line.size());
          flush();
          std::int64_t t4 = mono_ns();
          // What the server's formula gives: T1 - T2/2, where T2 (message in to client ack in)
          // is, seen from here with equal legs, our ack's write time minus the message's.
          std::int64_t formula = t1 - (t4 - sent->written) / 2;
          record(sent->seq, rep, t1, t1, 0, formula, t3);
        }
      }
      in.consume(len + 1);
    }
  }

  // The message an ack's id names, if we sent it (and its slot was not reused since).
  const FsSent* match_id(const std::string& id_json) const {
    if (id_json.size() != 38) return nullptr;
    std::uint8_t b[16];
    int n = 0;
    for (std::size_t i = 1; i + 1 < id_json.size() && n < 32; ++i) {
      char c = id_json[i];
      if (c == '-') continue;
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (v < 0) return nullptr;
      b[n / 2] = static_cast<std::uint8_t>(n % 2 ? (b[n / 2] | v) : (v << 4));
      ++n;
    }
    if (n != 32) return nullptr;
    std::uint64_t seq = 0, tag;
    for (int k = 10; k < 16; ++k) seq = (seq << 8) | b[k];
    std::memcpy(&tag, b, 8);
    const FsSent& s = fs_sent[seq & (kBookSlots - 1)];
    return s.seq == seq && s.tag == tag && s.written != 0 ? &s : nullptr;
  }

  void record(std::uint64_t seq, const ProbeBook::Reply& rep, std::int64_t rtt, std::int64_t raw,
              std::int64_t turnaround, std::int64_t formula, std::int64_t t3) {
    if (!fig) return;  // warm-up
    fig->rtt.add(rtt);
    fig->raw.add(raw);
    if (fig->has_turnaround) fig->turnaround.add(turnaround);
    if (fig->has_fastsocket) fig->fastsocket.add(formula);
    fig->rate.arrival(t3);
    if (csv) {
      std::fprintf(csv, "%u,%llu,%lld,%lld,%lld,%s,%s,%d\n", fig->size, static_cast<unsigned long long>(seq),
                   static_cast<long long>(rep.sent_ns - first_probe_ns), static_cast<long long>(rtt),
                   static_cast<long long>(raw), fig->has_turnaround ? std::to_string(turnaround).c_str() : "",
                   fig->has_fastsocket ? std::to_string(formula).c_str() : "", rep.kind == ProbeBook::Kind::late ? 1 : 0);
    }
    if (!o.plot_path.empty()) {
      if (plot.size() >= kMaxPlotPoints) {
        // Halve, keeping the larger RTT of each pair: spikes are what a plot is for.
        std::size_t j = 0;
        for (std::size_t i = 0; i + 1 < plot.size(); i += 2) plot[j++] = plot[i].rtt_us >= plot[i + 1].rtt_us ? plot[i] : plot[i + 1];
        plot.resize(j);
      }
      plot.push_back({static_cast<double>(rep.sent_ns - first_probe_ns) / 1e9, static_cast<double>(rtt) / 1e3});
    }
    if (o.every > 0 && !o.verbosity.quiet && !o.json && fig->rtt.count() % o.every == 0) {
      say_out(probe_line(t.text, fig->wire_bytes, seq, rtt, raw, turnaround, fig->has_turnaround,
                         rep.kind == ProbeBook::Kind::late));
    }
  }

  // ---- the run
  int run() {
    plan();
    if (!o.csv_path.empty()) {
      csv = std::fopen(o.csv_path.c_str(), "w");
      if (!csv) {
        ctx.say(errno_error(ErrorKind::io, "--csv " + o.csv_path, errno).message().insert(0, ctx.program + ": "));
        return exit_code(ErrorKind::io);
      }
      std::fputs("size,seq,sent_ns,rtt_ns,raw_ns,turnaround_ns,fastsocket_formula_ns,late\n", csv);
    }
    if (!connect()) {
      if (stopping && !error) return exit_code(ErrorKind::cancelled);
      return finish();
    }
    if (o.busy_poll) socket_busy_poll(sock->fd());
    watch = r.watch(sock->fd(), POLLIN, [this](short ev) { on_io(ev); });
    run_start = mono_ns();
    deadline = std::isinf(o.deadline_s) ? INT64_MAX : run_start + to_ns(o.deadline_s);
    if (!o.json && !o.verbosity.quiet) {
      std::string setup = figures.setup_s >= 0 ? ", connected in " + fmt_ns(figures.setup_s * 1e9) : "";
      say_out(fmt::format("DLPING {} ({} over {}){}", t.text, figures.proto, figures.transport, setup));
    }
    start_phase();
    setup_direct();
    while (!finished) {
      if (direct_round()) continue;
      direct_rounds = 0;
      if (sock->has_buffered_input()) {
        // Replies already decrypted: no poll event will announce them.
        on_io(POLLIN);
        r.run_once(Clock::duration::zero());
        continue;
      }
      r.run_once();
    }
    return finish();
  }

  int finish() {
    // With keys, an orderly end says so (close_notify), or the responder sees a cut.
    if (sock && sock->tls() && !error) {
      sock->shutdown_write();
      (void)sock->flush();
    }
    if (csv) {
      if (std::fclose(csv) != 0 && !error) error = errno_error(ErrorKind::io, "--csv " + o.csv_path, errno);
      csv = nullptr;
    }
    // A phase cut short (signal, error) still reports what it saw.
    if (book && fig) fill_figures();
    std::uint64_t received = 0;
    for (auto& p : figures.phases) received += p.received;
    if (!figures.phases.empty()) {
      // -q silences the probe lines, never the summary (as ping -q).
      std::string s = o.json ? json_summary(figures) : text_summary(figures, o.histogram);
      [[maybe_unused]] auto n = ::write(ctx.stdout_fd, s.data(), s.size());
      if (!o.plot_path.empty()) {
        const auto& last = figures.phases.back();
        PlotInput pin;
        pin.title = fmt::format("dlping {} ({} over {}): {} replies, {}-byte probes", t.text, figures.proto,
                               figures.transport, last.rtt.count(), last.wire_bytes);
        if (!last.has_turnaround) pin.y_label = "RTT incl. responder turnaround (µs)";
        pin.series = plot;
        pin.buckets = last.rtt.histogram().buckets();
        pin.p50_us = static_cast<double>(last.rtt.histogram().percentile(50)) / 1e3;
        pin.p99_us = static_cast<double>(last.rtt.histogram().percentile(99)) / 1e3;
        auto st = write_file_atomically(o.plot_path, render_svg(pin), "--plot", false);
        if (!st && !error) error = st.error();
      }
    }
    if (error) {
      ctx.say(ctx.program + ": " + error->message());
      return exit_code(error->kind);
    }
    if (received == 0 && !figures.phases.empty()) {
      std::uint64_t sent = 0;
      for (auto& p : figures.phases) sent += p.sent;
      if (sent > 0) {
        ctx.say(fmt::format("{}: {}: no reply to any of {} probes", ctx.program, t.text, sent));
        return exit_code(ErrorKind::timeout);
      }
    }
    return 0;
  }
};

Client::Client(const DlpingOptions& o, ToolContext& ctx, Reactor& r, Target t, std::shared_ptr<TlsConfig> tls)
    : impl_(std::make_unique<Impl>(o, ctx, r, std::move(t), std::move(tls))) {}
Client::~Client() = default;
int Client::run() { return impl_->run(); }
void Client::interim() {
  Impl& m = *impl_;
  if (!m.book || m.figures.phases.empty()) return;
  RunFigures copy = m.figures;
  if (m.fig) {
    PhaseFigures& f = copy.phases.back();
    f.sent = m.book->sent_count();
    f.received = m.book->received();
    f.lost = m.book->lost();
    f.duplicated = m.book->duplicates();
    f.out_of_order = m.book->out_of_order();
    f.timeouts = m.book->timeouts();
    f.late = m.book->late();
    f.unknown = m.book->unknown() + m.unknown_ids;
    f.duration_s = static_cast<double>(mono_ns() - m.phase_start) / 1e9;
  }
  std::string text = m.o.json ? json_summary(copy) : text_summary(copy, m.o.histogram);
  [[maybe_unused]] auto n = ::write(m.ctx.stdout_fd, text.data(), text.size());
}

void Client::stop() {
  impl_->stopping = true;
  impl_->sending = false;
  if (impl_->book && !impl_->finished) {
    impl_->finished = true;  // ping style: the summary now, without waiting for stragglers
  }
}

}  // namespace dl::ping
