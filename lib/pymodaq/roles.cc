// The four roles of pymodaq-emu. Each is a small state machine on one reactor; the codec does
// the bytes, Connection the socket, and these classes only the conversation.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <sstream>

#include "lib/base/clock.h"
#include "lib/net/acceptor.h"
#include "lib/net/connector.h"
#include "lib/net/evict.h"
#include "lib/net/handshake_trust.h"
#include "lib/net/net.h"
#include "lib/net/refusal_log.h"
#include "lib/net/stream.h"
#include "lib/net/tls_gate.h"
#include "lib/pymodaq/array_input.h"
#include "lib/pymodaq/connection.h"
#include "lib/pymodaq/json.h"
#include "lib/pymodaq/pymodaq_emu.h"
#include "lib/pymodaq/settings_xml.h"

namespace dl::pymodaq {

namespace {

constexpr int kCancelled = 130;

// JSON lines to stdout: buffered, written before the reactor sleeps and at the end. A blocking
// write: stdout is the user's pipe, and a slow reader should slow us down, not grow a buffer.
class LineOut {
 public:
  explicit LineOut(int fd) : fd_(fd) {}
  void line(std::string s) {
    buf_ += s;
    buf_ += '\n';
    if (buf_.size() > (1u << 20)) (void)flush();  // a failure is kept and reported by the next flush()
  }
  Status flush() {
    std::size_t at = 0;
    while (at < buf_.size() && !failed_) {
      ssize_t n = ::write(fd_, buf_.data() + at, buf_.size() - at);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          pollfd p{fd_, POLLOUT, 0};
          ::poll(&p, 1, 1000);
          continue;
        }
        failed_ = true;
        error_ = errno_error(ErrorKind::io, "stdout", errno);
      } else {
        at += static_cast<std::size_t>(n);
      }
    }
    buf_.clear();
    if (failed_) return error_;
    return ok_status();
  }
  bool failed() const { return failed_; }
  const Error& error() const { return error_; }

 private:
  int fd_;
  std::string buf_;
  bool failed_ = false;
  Error error_;
};

// What every role shares: the reactor, signals, the end of the run.
class RoleBase {
 public:
  RoleBase(const EmuOptions& o, ToolContext& ctx)
      : o_(o), ctx_(ctx), signals_(r_, [this](int sig) { on_signal(sig); }) {}
  virtual ~RoleBase() = default;

  int run() {
    if (o_.tls.any()) {
      auto cfg = TlsConfig::load(o_.tls, o_.role == Role::server ? TlsRole::listener : TlsRole::dialer);
      if (!cfg) {
        say_error(cfg.error());
        return exit_code(cfg.error().kind);
      }
      tls_ = std::move(*cfg);
    }
    start();
    while (code_ < 0) r_.run_once();
    return code_;
  }

 protected:
  virtual void start() = 0;
  // Ends the run with `code` once `conn` (if any) has written everything queued, bounded by a
  // few seconds so a peer that stopped reading cannot hold us forever.
  void finish(int code, Connection* conn = nullptr) {
    if (finishing_) return;
    finishing_ = true;
    if (!conn || !conn->open()) {
      end(code);
      return;
    }
    finish_timer_ = std::make_unique<Timer>(r_, [this, code] { end(code); });
    finish_timer_->arm(deadline_after(Clock::now(), 5));
    conn->close_after_flush([this, code] { end(code); });
  }
  // The run ends with `code`. It may be decided in a before-poll hook, so the reactor is woken
  // rather than left to sleep until some later event.
  void end(int code) {
    if (code_ < 0) code_ = code;
    r_.wake();
  }
  void fail(const Error& e, Connection* conn = nullptr) {
    if (finishing_) return;
    say_error(e);
    finish(exit_code(e.kind), conn);
  }
  void say_error(const Error& e) { ctx_.say(ctx_.program + ": " + e.message()); }
  void info(const std::string& s) {
    if (!o_.verbosity.quiet) ctx_.say(ctx_.program + ": " + s);
  }
  void debug(const std::string& s) {
    if (o_.verbosity.verbose) ctx_.say(ctx_.program + ": " + s);
  }
  virtual Connection* connection() { return nullptr; }
  virtual void on_signal(int) {
    if (finishing_) {
      end(kCancelled);  // a second signal: stop now
      return;
    }
    finish(kCancelled, connection());
  }

  const EmuOptions& o_;
  ToolContext& ctx_;
  Reactor r_;
  SignalWatcher signals_;
  int code_ = -1;
  bool finishing_ = false;
  std::shared_ptr<TlsConfig> tls_;  // keys (dl-security(7)): every connection through TLS
  std::unique_ptr<TlsGate> gate_;   // with keys: the handshakes, before a Connection exists
  std::unique_ptr<Timer> finish_timer_;
};

Result<Endpoint> dial_endpoint(const std::string& text) {
  // HOST alone means the PyMoDAQ default port.
  if (text.find(':') == std::string::npos) return parse_dial_endpoint(text + ":6341");
  return parse_dial_endpoint(text);
}

// ------------------------------------------------------------------------------------ clients

// What the grabber and the actuator share: dialing with backoff, announcing, reconnecting.
class ClientRole : public RoleBase {
 public:
  using RoleBase::RoleBase;

 protected:
  virtual const char* client_type() const = 0;
  virtual std::string settings() const = 0;
  virtual void on_command(Message&& m) = 0;
  virtual void on_connected() {}
  virtual void on_disconnected() {}
  virtual void on_drained() {}
  // No request waiting for an answer (Quit may end the run).
  virtual bool idle() const { return true; }

  void start() override {
    auto ep = dial_endpoint(o_.endpoint);
    if (!ep) {
      fail(ep.error());
      return;
    }
    if (ep->kind != Endpoint::Kind::tcp) {
      fail(make_error(ErrorKind::usage, o_.endpoint, "PyMoDAQ speaks TCP only"));
      return;
    }
    endpoint_ = *ep;
    dial();
  }

  // Dials with backoff until --wait has passed (0: one round), again after every disconnect.
  void dial() {
    ConnectorOptions co;
    co.deadline = deadline_after(Clock::now(), o_.wait_s);
    co.fail_fast_on_resolve = o_.wait_s <= 0;
    connector_ = std::make_unique<Connector>(r_, endpoint_, co, [this](Result<Connected> c) {
      if (!c) {
        fail(c.error());
        return;
      }
      if (tls_) {
        secure(std::move(c->fd), c->peer);
        return;
      }
      connected(std::make_unique<TlsSocket>(std::move(c->fd)), c->peer.to_string());
    });
    connector_->start();
  }

  Connection* connection() override { return conn_.get(); }

  // Like PyMoDAQ's own client when it stops: say Quit (after the message being written), so the
  // plugin closes our socket at once instead of finding it dead later.
  void on_signal(int sig) override {
    if (!finishing_ && conn_ && conn_->open() && !quit_received_) conn_->send(command_message("Quit"));
    RoleBase::on_signal(sig);
  }

  // Keys: the TLS handshake first; a refusal that a retry cannot mend (auth) ends the run.
  void secure(Fd fd, const SocketAddress& peer) {
    if (!gate_) {
      gate_ = std::make_unique<TlsGate>(
          r_, tls_, TlsGateOptions{},
          [this](std::unique_ptr<TlsSocket> s, const SocketAddress& p) { connected(std::move(s), p.to_string()); },
          [this](const Error& e, const SocketAddress&) {
            if (finishing_) return;
            // As the link does (dl-security(7)): a refusal may be damage on the path.
            Error why = trust_.judge(e);
            if (o_.wait_s > 0 && is_retryable(why)) {
              info(why.message() + "; reconnecting");
              dial();
              return;
            }
            fail(why);
          });
    }
    gate_->admit(std::move(fd), peer, endpoint_.kind == Endpoint::Kind::tcp ? endpoint_.host : std::string());
  }

  void connected(std::unique_ptr<TlsSocket> sock, std::string peer) {
    Connection::Callbacks cb;
    cb.on_message = [this](Message&& m, std::uint64_t, std::size_t) { handle(std::move(m)); };
    cb.on_closed = [this](const Error& e) { closed(e); };
    cb.on_drained = [this] { on_drained(); };
    bool plain = sock->tls() == nullptr;
    tls_now_ = sock->tls();
    conn_ = std::make_unique<Connection>(r_, std::move(sock), peer, o_.dialect, o_.limits, cb);
    if (plain) conn_->notice_tls_peers(true);
    debug("connected to " + peer + " (" + o_.dialect.name() + ")");
    conn_->send(command_message(client_type()));
    Message infos = command_message("Infos");
    infos.xml = settings();
    infos.xml_bytes = o_.dialect.gen == Generation::v5;  // PyMoDAQ 5 sends the XML as bytes
    conn_->send(infos);
    on_connected();
  }

  void handle(Message&& m) {
    if (m.command == "Quit") {
      // Commands are answered in order: what was asked before Quit is still answered.
      debug("Quit received");
      quit_received_ = true;
      conn_->pause_reading(true);
      if (idle()) finish(kExitOk, conn_.get());
      return;
    }
    if (m.command.empty()) {
      debug("an object with no command before it (skipped)");
      return;
    }
    if (payload_of(m.command, o_.dialect) == Payload::unknown) {
      info("unknown command '" + m.command + "' ignored");
      return;
    }
    on_command(std::move(m));
  }

  void closed(const Error& e) {
    // The server's ticket or data came on this connection: it accepted our keys.
    if (tls_now_ && tls_now_->peer_accepted()) trust_.accepted();
    tls_now_ = nullptr;
    // Destroying the connection inside its own callback is not allowed: defer.
    dead_.push_back(std::move(conn_));
    cleanup_ = std::make_unique<Timer>(r_, [this] { dead_.clear(); });
    cleanup_->arm(Clock::now());
    quit_received_ = false;
    on_disconnected();
    if (finishing_) return;
    // The same keys would fail again, unless the refusal may be damage (see secure()).
    if (o_.wait_s > 0 && (e.kind != ErrorKind::auth || !trust_.judge(e).final)) {
      info(e.message() + "; reconnecting");
      dial();
      return;
    }
    fail(e);
  }

  // Sets a few well-known parameters from set_info; returns the name and value applied.
  static std::pair<std::string, std::string> set_info_param(const Message& m) {
    std::string name = !m.path.empty() ? m.path.back() : first_element(m.xml);
    auto v = find_param(m.xml, name);
    if (!v) v = find_param(m.xml, first_element(m.xml));
    return {name, v.value_or("")};
  }

  std::unique_ptr<Connection> conn_;
  TlsSession* tls_now_ = nullptr;        // conn_'s, while it lives
  HandshakeTrust trust_{o_.wait_s > 0};  // whether a refused handshake is believed
  std::vector<std::unique_ptr<Connection>> dead_;
  std::unique_ptr<Timer> cleanup_;
  bool quit_received_ = false;
  Endpoint endpoint_;
  std::unique_ptr<Connector> connector_;
};

// ------------------------------------------------------------------------------------ grabber

class GrabberRole : public ClientRole {
 public:
  GrabberRole(const EmuOptions& o, ToolContext& ctx)
      : ClientRole(o, ctx), synth_(o.synth), push_timer_(r_, [this] { push_tick(); }) {}

 private:
  const char* client_type() const override { return "GRABBER"; }

  std::string settings() const override {
    std::string shape = [&] {
      std::string s;
      for (auto d : synth_.config().shape_2d) s += (s.empty() ? "" : "x") + std::to_string(d);
      return s;
    }();
    return settings_xml({{"source", "str", o_.data.empty() ? "synthetic" : o_.data == "-" ? "stdin" : o_.data},
                         {"dtype", "str", synth_.config().dtype},
                         {"channels", "int", std::to_string(synth_.config().channels)},
                         {"shape_2d", "str", shape},
                         {"dialect", "str", o_.dialect.name()}});
  }

  void start() override {
    t0_ = Clock::now();
    if (!o_.data.empty()) {
      if (o_.data == "-") {
        in_ = Stream::from_inherited(r_, ctx_.stdin_fd, false);
      } else {
        int stopped_by = 0;  // a FIFO waits for its writer: a signal ends that wait as any other
        int fd = signals_.open(o_.data.c_str(), O_RDONLY | O_CLOEXEC, 0, &stopped_by);
        if (stopped_by) {
          end(kCancelled);
          return;
        }
        if (fd < 0) {
          fail(errno_error(ErrorKind::io, "--data " + o_.data, errno));
          return;
        }
        in_ = Stream::from_fd(r_, Fd(fd));
      }
      in_->on_readable([this] {
        stop_input();
        serve();
      });
    }
    ClientRole::start();
  }

  void on_connected() override {
    if (o_.rate_hz > 0) {
      next_push_ = Clock::now();
      push_timer_.arm(next_push_);
    }
    serve();
  }

  void on_disconnected() override {
    requests_.clear();
    push_timer_.cancel();
    stop_input();
  }

  void on_drained() override {
    if (push_blocked_) {
      push_blocked_ = false;
      push_tick();
    }
    serve();
  }

  void on_command(Message&& m) override {
    const std::string& c = m.command;
    if (c.rfind("Send Data ", 0) == 0) {
      if (c == "Send Data ND" && o_.dialect.gen == Generation::v1) {
        info("'Send Data ND' is not in PyMoDAQ 1.6-2.0.0's command list (ignored)");
        return;
      }
      requests_.push_back(c.substr(10));
      serve();
      return;
    }
    if (c == "set_info") {
      auto [name, value] = set_info_param(m);
      if (name == "channels") {
        int n = std::atoi(value.c_str());
        if (n >= 1 && n <= 64) synth_config_channels(n);
      }
      debug("set_info " + name + " = " + value);
      return;
    }
    debug("'" + c + "' is not for a grabber (ignored)");
  }

  void synth_config_channels(int n) {
    SynthConfig c = synth_.config();
    c.channels = n;
    synth_ = Synth(c);
  }

  void push_tick() {
    if (!conn_ || finishing_) return;
    // Unsolicited Done at --rate; while the socket is congested the ticks stop (no queue, no
    // spinning) and resume from on_drained.
    if (conn_->congested()) {
      push_blocked_ = true;
      return;
    }
    if (requests_.empty()) {
      requests_.push_back(o_.push_dim);
      serve();
    }
    auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o_.rate_hz));
    next_push_ += period;
    auto now = Clock::now();
    if (next_push_ < now) next_push_ = now;
    push_timer_.arm(next_push_);
  }

  // Answers queued requests while the connection takes them.
  void serve() {
    while (conn_ && !finishing_ && !requests_.empty() && !conn_->congested()) {
      std::optional<Dte> frame = next_frame(requests_.front());
      if (!frame) break;  // waiting for input, or finished
      requests_.pop_front();
      Message m = command_message("Done");
      m.data = std::move(*frame);
      if (auto why = can_carry(m, o_.dialect); !why.empty()) {
        fail(make_error(ErrorKind::usage, "--data", why), conn_.get());
        return;
      }
      conn_->send(m);
      ++sent_;
      if (o_.count && sent_ >= o_.count) {
        debug(fmt::format("sent {} data messages", sent_));
        finish(kExitOk, conn_.get());
        return;
      }
    }
    if (!conn_ || finishing_) return;
    if (quit_received_) {
      if (requests_.empty()) finish(kExitOk, conn_.get());
      return;
    }
    // A flood of requests waits in the kernel rather than in our queue.
    conn_->pause_reading(requests_.size() > 16 || conn_->congested());
  }

  bool idle() const override { return requests_.empty(); }

  std::optional<Dte> next_frame(const std::string& dim) {
    double now = unix_now();
    if (!in_) return synth_.frame(dim, seconds_between(t0_, Clock::now()), now, o_.name);
    if (!ready_) {
      read_input();
      if (finishing_) return std::nullopt;
      if (!ready_) {
        if (in_eof_) {
          if (o_.keep_open && last_) {
            ready_ = last_;
          } else {
            debug("end of --data input");
            finish(kExitOk, conn_.get());
            return std::nullopt;
          }
        } else {
          start_input();
          return std::nullopt;
        }
      }
    }
    Dte d;
    d.timestamp = now;
    d.name = o_.name;
    Dwa w;
    w.cls = "DataRaw";  // as in the data PyMoDAQ itself encoded (testdata/pymodaq)
    w.timestamp = now;
    w.name = o_.name;
    w.origin = o_.name;
    w.dim = std::string(dim_name(ready_->shape.size(), ready_->elements()));
    w.data.push_back(std::move(*ready_));
    w.labels = {"CH00"};
    if (o_.keep_open) last_ = w.data[0];
    ready_.reset();
    d.data.push_back(std::move(w));
    return d;
  }

  // Parses one array from what is buffered, reading stdin without blocking.
  void read_input() {
    while (!ready_ && !finishing_) {
      std::size_t buffered = buf_.size() - head_;
      if (buffered > 0 && buffered >= needed_) {
        ArrayParse p = parse_array(std::span<const std::uint8_t>(buf_.data() + head_, buffered), offset_, o_.limits.max_message);
        if (p.status == ArrayParse::Status::bad) {
          fail(p.error, conn_.get());
          return;
        }
        if (p.status == ArrayParse::Status::array) {
          ready_ = std::move(p.array);
          head_ += p.consumed;
          offset_ += p.consumed;
          needed_ = 1;
          if (head_ == buf_.size()) {
            buf_.clear();
            head_ = 0;
          }
          return;
        }
        needed_ = p.needed;
      }
      if (in_eof_) {
        if (buf_.size() > head_) {
          fail(protocol_error("truncated", "--data", fmt::format("input ends inside the array at byte {}", offset_), false), conn_.get());
        }
        return;
      }
      if (head_ > 0) {
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
      }
      std::size_t at = buf_.size();
      std::size_t want = std::max<std::size_t>(256u << 10, needed_ > at ? needed_ - at : 0);
      buf_.resize(at + want);
      ssize_t n = in_->read(buf_.data() + at, want);
      if (n < 0) {
        buf_.resize(at);
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        fail(errno_error(ErrorKind::io, o_.data == "-" ? "stdin" : o_.data, errno), conn_.get());
        return;
      }
      buf_.resize(at + static_cast<std::size_t>(n));
      if (n == 0) in_eof_ = true;
    }
  }

  void start_input() {
    if (in_) in_->want_read(true);
  }
  void stop_input() {
    if (in_) in_->want_read(false);
  }

  Synth synth_;
  Clock::time_point t0_;
  std::deque<std::string> requests_;
  std::uint64_t sent_ = 0;
  Timer push_timer_;
  Clock::time_point next_push_;
  bool push_blocked_ = false;
  // --data
  std::unique_ptr<Stream> in_;
  InBuffer buf_;
  std::size_t head_ = 0, needed_ = 1;
  std::uint64_t offset_ = 0;
  bool in_eof_ = false;
  std::optional<Array> ready_, last_;
};

// ------------------------------------------------------------------------------------ actuator

class ActuatorRole : public ClientRole {
 public:
  ActuatorRole(const EmuOptions& o, ToolContext& ctx)
      : ClientRole(o, ctx), axis_(o.axis), motion_timer_(r_, [this] { report_motion(); }) {}

 private:
  const char* client_type() const override { return "ACTUATOR"; }

  std::string settings() const override {
    const AxisConfig& c = axis_.config();
    auto num = [](double v) { return fmt::format("{}", v); };
    return settings_xml({{"units", "str", c.units},
                         {"velocity", "float", num(c.velocity)},
                         {"min", "float", num(c.min)},
                         {"max", "float", num(c.max)},
                         {"home", "float", num(c.home)},
                         {"dialect", "str", o_.dialect.name()}});
  }

  void on_disconnected() override { motion_timer_.cancel(); }

  Message position(const char* command) {
    return position_message(command, axis_.position(Clock::now()), axis_.config().units, unix_now());
  }

  void on_command(Message&& m) override {
    const std::string& c = m.command;
    auto now = Clock::now();
    if (c == "move_abs" || c == "move_rel") {
      double v = position_value(m);
      if (std::isnan(v)) {
        info("'" + c + "' without a number ignored");
        return;
      }
      if (m.position && !m.position->units.empty() && m.position->units != axis_.config().units) {
        debug(fmt::format("{} in '{}' while the axis is in '{}' (taken as is)", c, m.position->units, axis_.config().units));
      }
      double target = c == "move_abs" ? axis_.move_to(v, now) : axis_.move_by(v, now);
      debug(fmt::format("{} {} -> target {}", c, v, target));
      report_motion();
    } else if (c == "move_home") {
      axis_.go_home(now);
      report_motion();
    } else if (c == "check_position" || c == "get_actuator_value") {
      conn_->send(position("position_is"));
    } else if (c == "stop_motion") {
      axis_.stop(now);
      motion_timer_.cancel();
      debug(fmt::format("stopped at {}", axis_.position(now)));
    } else if (c == "set_info") {
      auto [name, value] = set_info_param(m);
      apply(name, value);
    } else {
      debug("'" + c + "' is not for an actuator (ignored)");
    }
  }

  void apply(const std::string& name, const std::string& value) {
    auto now = Clock::now();
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    bool number = !value.empty() && end == value.c_str() + value.size();
    AxisConfig& c = axis_.config();
    if (name == "units") c.units = value;
    else if (name == "velocity" && number) c.velocity = v;
    else if (name == "home" && number) c.home = v;
    else if (name == "min" && number) axis_.set_limits(v, c.max, now);
    else if (name == "max" && number) axis_.set_limits(c.min, v, now);
    else {
      info("set_info " + name + " = '" + value + "' not applied (known: units, velocity, min, max, home)");
      return;
    }
    debug("set_info " + name + " = " + value);
  }

  // position_is every update_s while moving, move_done on arrival.
  void report_motion() {
    if (!conn_) return;
    auto now = Clock::now();
    if (!axis_.moving(now)) {
      motion_timer_.cancel();
      conn_->send(position("move_done"));
      return;
    }
    conn_->send(position("position_is"));
    auto next = deadline_after(now, o_.update_s);
    motion_timer_.arm(std::min(next, axis_.arrival()));
  }

  AxisSim axis_;
  Timer motion_timer_;
};

// ------------------------------------------------------------------------------------ server

class ServerRole : public RoleBase {
 public:
  ServerRole(const EmuOptions& o, ToolContext& ctx)
      : RoleBase(o, ctx), out_(ctx.stdout_fd), wait_timer_(r_, [this] { no_client(); }),
        linger_timer_(r_, [this] { finish(kExitOk, current()); }),
        announce_timer_(r_, [this] { drop_silent(); }),
        sleep_timer_(r_, [this] {
          sleeping_ = false;
          pump_stdin();
        }) {}

 private:
  struct Client {
    std::unique_ptr<Connection> conn;
    std::string type;  // "" until announced
    SocketAddress addr;
    Clock::time_point since;
    bool dropped = false;  // closing: no longer counts as a newcomer
  };
  // A connection is nobody's until it announces its type (PyMoDAQ's clients do so at once).
  // Strangers that never do are bounded in time and number, as TlsGate bounds handshakes:
  // otherwise a crowd of silent or trickling connections held descriptors for ever and a
  // real client could no longer be accepted.
  static constexpr auto kAnnounceWithin = std::chrono::seconds(5);
  static constexpr std::size_t kMaxUnannounced = 64;
  // Nor may one make us buffer a message of --max-message (v5 frames the type announcement by
  // a length: 64 strangers announcing 256 MiB each held 16 GiB). PyMoDAQ's is a few bytes.
  static constexpr std::uint64_t kAnnounceLimit = 64u << 10;

  Connection* current() { return current_ ? current_->conn.get() : nullptr; }
  Connection* connection() override { return current(); }

  void start() override {
    flush_hook_ = r_.before_poll([this] {
      if (!out_.flush() && !finishing_) fail(out_.error(), current());
    });
    auto ep = parse_listen_endpoint(o_.endpoint);
    if (!ep) {
      fail(ep.error());
      return;
    }
    auto l = listen_on(*ep);  // net's generous backlog: a burst of connects must not wait out SYN retries
    if (!l) {
      fail(l.error());
      return;
    }
    local_ = l->local;
    std::uint16_t port = port_of(local_);
    if (!o_.port_file.empty()) {
      if (auto st = write_port_file(o_.port_file, port); !st) {
        fail(st.error());
        return;
      }
    }
    if (ep->port == 0 && o_.port_file.empty()) info("listening on " + local_.to_string());
    else debug("listening on " + local_.to_string());
    acceptor_ = std::make_unique<Acceptor>(
        r_, std::move(*l), AcceptorOptions{}, [this](Accepted a) { accepted(std::move(a)); },
        [this](const Error& e, const SocketAddress*) { debug(e.message()); });
    in_ = Stream::from_inherited(r_, ctx_.stdin_fd, false);
    in_->on_readable([this] { pump_stdin(); });
    if (std::isfinite(o_.wait_s) && o_.wait_s > 0) wait_timer_.arm(deadline_after(Clock::now(), o_.wait_s));
  }

  void no_client() {
    if (!current_) fail(make_error(ErrorKind::timeout, "listen " + local_.to_string(),
                                   fmt::format("no {} connected within {} s", o_.expect, o_.wait_s)));
  }

  void event(const std::string& what, const std::string& peer, const std::string& extra = {}) {
    std::string s = "{\"event\":";
    append_json_string(s, what);
    s += ",\"peer\":";
    append_json_string(s, peer);
    s += extra + "}";
    out_.line(std::move(s));
  }

  void accepted(Accepted a) {
    if (finishing_) return;  // dropped: we are on our way out
    if (tls_) {
      // Keys: a client exists once its handshake succeeded; strangers never reach the codec.
      if (!gate_) {
        gate_ = std::make_unique<TlsGate>(
            r_, tls_, TlsGateOptions{},
            [this](std::unique_ptr<TlsSocket> s, const SocketAddress& p) { open_client(std::move(s), p); },
            [this](const Error& e, const SocketAddress& p) { refusals_.refused(p.to_string(), e); });
      }
      gate_->admit(std::move(a.fd), a.peer);
      return;
    }
    open_client(std::make_unique<TlsSocket>(std::move(a.fd)), a.peer);
  }

  std::vector<Client*> unannounced() {
    std::vector<Client*> v;  // oldest first
    for (auto& x : clients_)
      if (x->type.empty() && !x->dropped) v.push_back(x.get());
    return v;
  }

  // Drops the newcomers that did not announce within kAnnounceWithin; waits for the next one.
  void drop_silent() {
    auto now = Clock::now();
    for (Client* c : unannounced()) {
      if (c->since + kAnnounceWithin > now) {
        announce_timer_.arm(c->since + kAnnounceWithin);
        return;
      }
      info("client " + c->conn->peer() + " did not announce GRABBER or ACTUATOR within 5 s (closed)");
      drop(c, "no client type within 5 s");
    }
  }

  void open_client(std::unique_ptr<TlsSocket> sock, const SocketAddress& addr) {
    if (finishing_) return;
    std::string name = addr.to_string();
    if (auto waiting = unannounced(); waiting.size() >= kMaxUnannounced) {
      std::vector<SocketAddress> peers;
      for (Client* w : waiting) peers.push_back(w->addr);
      Client* out = waiting[evictee(peers)];
      info("client " + out->conn->peer() + " closed to make room: " + std::to_string(kMaxUnannounced) +
           " connections have not announced their type");
      drop(out, "too many clients without a type");
    }
    auto c = std::make_shared<Client>();
    c->addr = addr;
    c->since = Clock::now();
    bool plain = sock->tls() == nullptr;
    Client* raw = c.get();
    Connection::Callbacks cb;
    cb.on_message = [this, raw](Message&& m, std::uint64_t off, std::size_t size) { on_message(raw, std::move(m), off, size); };
    cb.on_closed = [this, raw](const Error& e) { on_closed(raw, e); };
    cb.on_drained = [this] { pump_stdin(); };
    Limits first = o_.limits;
    first.max_message = std::min(first.max_message, kAnnounceLimit);
    c->conn = std::make_unique<Connection>(r_, std::move(sock), name, o_.dialect, first, cb);
    if (plain) c->conn->notice_tls_peers(false);
    clients_.push_back(c);
    event("connected", name);
    if (!announce_timer_.armed()) announce_timer_.arm(c->since + kAnnounceWithin);
  }

  void on_message(Client* c, Message&& m, std::uint64_t off, std::size_t size) {
    const std::string expect = o_.expect == "actuator" ? "ACTUATOR" : "GRABBER";
    out_.line(message_json(m, o_.dialect, {o_.full, std::nullopt, std::nullopt}));
    (void)off;
    (void)size;
    if (c->type.empty()) {
      // The first message is the client type; PyMoDAQ (2.0.1+) closes a client of the wrong type.
      if (m.command != "GRABBER" && m.command != "ACTUATOR") {
        info("client " + c->conn->peer() + " did not announce GRABBER or ACTUATOR (closed)");
        drop(c, "no client type");
        return;
      }
      c->type = m.command;
      if (c->type != expect) {
        info("client " + c->conn->peer() + " is " + c->type + ", not " + expect + " (closed)");
        drop(c, "wrong client type");
        return;
      }
      c->conn->set_limits(o_.limits);
      // Commands go to the last client of the expected type, as in PyMoDAQ.
      if (current_ && current_.get() != c) drop(current_.get(), "replaced by a newer client");
      for (auto& x : clients_)
        if (x.get() == c) current_ = x;
      wait_timer_.cancel();
      pump_stdin();
      return;
    }
    if (m.command == "Infos") {
      if (auto u = find_param(m.xml, "units")) units_ = *u;
    } else if (m.command == "Quit") {
      drop(c, "client sent Quit");
      return;
    } else if ((m.command == "x_axis" || m.command == "y_axis") &&
               (o_.dialect.gen == Generation::v4 || o_.dialect.gen == Generation::v5)) {
      drop(c, m.command + " is deprecated from PyMoDAQ 4.1 on (the plugin drops the client)");
      return;
    }
    if (c == current_.get()) {
      const std::string& cmd = m.command;
      if (cmd == "Done" && awaiting_data_ > 0) --awaiting_data_;
      if ((cmd == "move_done") && awaiting_move_ > 0) --awaiting_move_;
      if (cmd == "position_is" && awaiting_position_ > 0) --awaiting_position_;
      if (syncing_ && !awaiting()) {
        syncing_ = false;
        pump_stdin();
      }
      if (quit_sent_ && !awaiting() && !linger_timer_.armed()) {
        linger_timer_.arm(deadline_after(Clock::now(), o_.linger_s));
      }
      maybe_done();
    }
  }

  void drop(Client* c, const std::string& why) {
    if (c->dropped) return;
    c->dropped = true;
    event("closed", c->conn->peer(), ",\"reason\":\"" + why + "\"");
    auto keep = find(c);
    if (!keep) return;
    bool was_current = current_.get() == c;
    if (was_current) lost_current();
    c->conn->close_after_flush([this, keep] { bury(keep); });
  }

  std::shared_ptr<Client> find(Client* c) {
    for (auto& x : clients_)
      if (x.get() == c) return x;
    return nullptr;
  }

  void bury(std::shared_ptr<Client> c) {
    // Never destroy a connection from inside its own callback: later, from a timer.
    std::erase(clients_, c);
    graveyard_.push_back(std::move(c));
    if (!bury_timer_) bury_timer_ = std::make_unique<Timer>(r_, [this] { graveyard_.clear(); });
    bury_timer_->arm(Clock::now());
  }

  void on_closed(Client* c, const Error& e) {
    std::string reason;
    append_json_string(reason, e.message());
    event("closed", c->conn->peer(), ",\"reason\":" + reason);
    auto keep = find(c);
    bool was_current = current_.get() == c;
    if (e.id == "no-keys") refusals_.refused(c->conn->peer(), e);
    if (keep) bury(keep);
    if (was_current) {
      if (e.kind == ErrorKind::protocol || e.kind == ErrorKind::too_large || e.id == "truncated") say_error(e);
      else debug(e.message());
      lost_current();
    }
  }

  void lost_current() {
    current_.reset();
    if (quit_sent_) {
      finish(kExitOk);
      return;
    }
    if (stdin_eof_) {
      bool waiting = awaiting_data_ || awaiting_move_ || awaiting_position_;
      if (waiting) {
        fail(make_error(ErrorKind::disconnected, "client", "went away before answering every command"));
      } else {
        finish(kExitOk);
      }
      return;
    }
    awaiting_data_ = awaiting_move_ = awaiting_position_ = 0;
    syncing_ = false;
    in_->want_read(false);
  }

  bool awaiting() const { return awaiting_data_ || awaiting_move_ || awaiting_position_; }

  void maybe_done() {
    if (!stdin_eof_ || quit_sent_ || finishing_) return;
    if (awaiting()) return;
    finish(kExitOk, current());
  }

  // Reads stdin lines while a client is there to take them and its output is not congested.
  void pump_stdin() {
    while (current() && !finishing_ && !quit_sent_ && !stdin_eof_ && !syncing_ && !sleeping_ &&
           !current()->congested()) {
      std::size_t nl = line_buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = line_buf_.substr(0, nl);
        line_buf_.erase(0, nl + 1);
        ++line_no_;
        command(line);
        continue;
      }
      if (line_buf_.size() > 65536) {
        fail(make_error(ErrorKind::usage, fmt::format("stdin line {}", line_no_ + 1), "longer than 64 KiB"), current());
        return;
      }
      char buf[65536];
      ssize_t n = in_->read(buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          in_->want_read(true);
          return;
        }
        fail(errno_error(ErrorKind::io, "stdin", errno), current());
        return;
      }
      if (n == 0) {
        if (!line_buf_.empty()) {
          std::string line = std::move(line_buf_);
          line_buf_.clear();
          ++line_no_;
          command(line);
        }
        stdin_eof_ = true;
        in_->want_read(false);
        maybe_done();
        return;
      }
      line_buf_.append(buf, static_cast<std::size_t>(n));
    }
    if (in_) in_->want_read(false);
  }

  void command(const std::string& raw) {
    std::istringstream in(raw);
    std::string verb;
    in >> verb;
    if (verb.empty() || verb[0] == '#') return;
    std::string rest;
    std::getline(in, rest);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.erase(0, 1);
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\r' || rest.back() == '\t')) rest.pop_back();
    auto bad = [&](const std::string& why) { info(fmt::format("stdin line {}: {} (ignored)", line_no_, why)); };
    Connection* c = current();
    double now = unix_now();
    if (verb == "grab") {
      std::string dim = rest.empty() ? "2D" : rest;
      if (dim != "0D" && dim != "1D" && dim != "2D" && dim != "ND") return bad("grab takes 0D, 1D, 2D or ND");
      if (dim == "ND" && o_.dialect.gen == Generation::v1) return bad("v1 (PyMoDAQ 1.6-2.0.0) has no Send Data ND");
      c->send(command_message("Send Data " + dim));
      ++awaiting_data_;
    } else if (verb == "move_abs" || verb == "move_rel" || verb == "abs" || verb == "rel") {
      char* end = nullptr;
      double v = std::strtod(rest.c_str(), &end);
      if (rest.empty() || end != rest.c_str() + rest.size()) return bad(verb + " takes a number");
      bool abs = verb == "move_abs" || verb == "abs";
      // As PyMoDAQ 4.4 does: move_abs carries the client's units, move_rel an empty string.
      c->send(position_message(abs ? "move_abs" : "move_rel", v, abs ? units_ : "", now));
      ++awaiting_move_;
    } else if (verb == "home" || verb == "move_home") {
      c->send(command_message("move_home"));
      ++awaiting_move_;
    } else if (verb == "position" || verb == "check_position" || verb == "get_actuator_value") {
      c->send(command_message(verb == "position" ? std::string(o_.dialect.query_command()) : verb));
      ++awaiting_position_;
    } else if (verb == "stop" || verb == "stop_motion") {
      c->send(command_message("stop_motion"));
      awaiting_move_ = 0;  // a stopped axis owes no move_done
    } else if (verb == "set_info") {
      std::istringstream a(rest);
      std::string path, value;
      a >> path;
      std::getline(a, value);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (path.empty()) return bad("set_info takes a path (a.b.c) and a value");
      Message m = command_message("set_info");
      std::vector<std::string> parts;
      std::size_t i = 0;
      while (i <= path.size()) {
        std::size_t j = path.find('.', i);
        if (j == std::string::npos) j = path.size();
        parts.push_back(path.substr(i, j - i));
        i = j + 1;
      }
      // 1.6-4.0 servers sent the path from their own settings root, 4.x+ below settings_client.
      if (o_.dialect.gen == Generation::v1) m.path.push_back("infos");
      if (o_.dialect.gen == Generation::v2) m.path.push_back("settings_client");
      m.path.insert(m.path.end(), parts.begin(), parts.end());
      m.xml = param_xml({parts.back(), guess_type(value), value});
      m.xml_bytes = o_.dialect.gen == Generation::v5;
      c->send(m);
    } else if (verb == "quit" || verb == "Quit") {
      c->send(command_message("Quit"));
      quit_sent_ = true;
      // The client answers what came before Quit first; the linger starts once it has.
      if (!awaiting()) linger_timer_.arm(deadline_after(Clock::now(), o_.linger_s));
    } else if (verb == "sync") {
      // Holds further lines until every command sent so far has had its reply.
      syncing_ = awaiting();
    } else if (verb == "sleep") {
      char* end = nullptr;
      double v = std::strtod(rest.c_str(), &end);
      if (rest.empty() || end != rest.c_str() + rest.size() || !(v >= 0) || v > 86400) return bad("sleep takes seconds");
      sleeping_ = true;
      sleep_timer_.arm(deadline_after(Clock::now(), v));
    } else if (verb == "send") {
      if (rest.empty()) return bad("send takes a command string");
      c->send(command_message(rest));
    } else {
      bad("unknown command '" + verb + "' (grab, move_abs, move_rel, home, position, stop, set_info, send, sync, sleep, quit)");
    }
  }

  LineOut out_;
  SocketAddress local_;
  std::unique_ptr<Acceptor> acceptor_;
  RefusalLog refusals_{r_, [this](const std::string& line) { info(line); }};
  Reactor::Id flush_hook_ = 0;
  std::unique_ptr<Stream> in_;
  std::string line_buf_;
  std::uint64_t line_no_ = 0;
  bool stdin_eof_ = false, quit_sent_ = false, syncing_ = false, sleeping_ = false;
  std::vector<std::shared_ptr<Client>> clients_, graveyard_;
  std::shared_ptr<Client> current_;
  std::unique_ptr<Timer> bury_timer_;
  Timer wait_timer_, linger_timer_, announce_timer_, sleep_timer_;
  std::string units_;
  std::uint64_t awaiting_data_ = 0, awaiting_move_ = 0, awaiting_position_ = 0;

 public:
  ~ServerRole() override {
    (void)out_.flush();
    if (flush_hook_) r_.remove_before_poll(flush_hook_);
  }
};

// ------------------------------------------------------------------------------------ decode

int run_decode(const EmuOptions& o, ToolContext& ctx) {
  auto say = [&](const Error& e) { ctx.say(ctx.program + ": " + e.message()); };
  Fd file;
  int fd = ctx.stdin_fd;
  std::string name = o.input == "-" ? "stdin" : o.input;
  if (o.input != "-") {
    fd = ::open(o.input.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      say(errno_error(ErrorKind::io, o.input, errno));
      return exit_code(ErrorKind::io);
    }
    file = Fd(fd);
  }
  LineOut out(ctx.stdout_fd);
  InBuffer buf;
  std::size_t head = 0, needed = 1;
  std::uint64_t offset = 0, count = 0;
  bool eof = false;
  for (;;) {
    while (buf.size() - head >= needed && buf.size() > head) {
      Decoded d = decode(std::span<const std::uint8_t>(buf.data() + head, buf.size() - head), o.dialect, o.limits, offset);
      if (d.status == DecodeStatus::need_more) {
        needed = d.needed;
        break;
      }
      if (d.status == DecodeStatus::bad) {
        (void)out.flush();
        say(decode_error(d, "decode " + name));
        return exit_code(d.too_large ? ErrorKind::too_large : ErrorKind::protocol);
      }
      out.line(message_json(d.message, o.dialect, {o.full, offset, d.consumed}));
      ++count;
      head += d.consumed;
      offset += d.consumed;
      needed = 1;
    }
    if (out.failed()) {
      say(out.error());
      return exit_code(ErrorKind::io);
    }
    if (eof) break;
    if (head > 0) {
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(head));
      head = 0;
    }
    std::size_t at = buf.size();
    std::size_t want = std::max<std::size_t>(1u << 20, needed > at ? needed - at : 0);
    buf.resize(at + want);
    ssize_t n = ::read(fd, buf.data() + at, want);
    if (n < 0) {
      buf.resize(at);
      if (errno == EINTR) continue;
      say(errno_error(ErrorKind::io, "read " + name, errno));
      return exit_code(ErrorKind::io);
    }
    buf.resize(at + static_cast<std::size_t>(n));
    if (n == 0) eof = true;
  }
  if (auto st = out.flush(); !st) {
    say(st.error());
    return exit_code(ErrorKind::io);
  }
  if (buf.size() > head) {
    Error e = protocol_error("truncated", "decode " + name,
                             fmt::format("the stream ends inside the message at byte {} ({} bytes there, {} needed)", offset,
                                         buf.size() - head, std::max(needed, buf.size() - head + 1)),
                             false);
    say(e);
    return exit_code(ErrorKind::protocol);
  }
  if (o.verbosity.verbose) ctx.say(fmt::format("{}: {} messages, {} bytes", ctx.program, count, offset));
  return kExitOk;
}

}  // namespace

int run_pymodaq_emu(const EmuOptions& o, ToolContext& ctx) {
  switch (o.role) {
    case Role::decode: return run_decode(o, ctx);
    case Role::grabber: return GrabberRole(o, ctx).run();
    case Role::actuator: return ActuatorRole(o, ctx).run();
    case Role::server: return ServerRole(o, ctx).run();
  }
  return exit_code(ErrorKind::usage);
}

}  // namespace dl::pymodaq
