#include "lib/api/datalink.h"

#include "lib/codec/frame.h"
#include "lib/codec/message_io.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace dl {
namespace {

using namespace std::chrono_literals;

// Waits are cut into slices so that a state change the Link reports through no callback
// (there are a few, e.g. input parsed inside consume()) is still seen soon.
constexpr auto kSlice = 100ms;
// close(): after our direction is acknowledged, how long to wait for the peer's END.
constexpr auto kPeerEndGrace = 200ms;

std::optional<Clock::time_point> deadline_after(int timeout_ms) {
  if (timeout_ms < 0) return std::nullopt;
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Threads we start never take asynchronous signals: they go to the application's threads
// (for Python: the main thread, where its handlers run).
template <class F>
std::thread start_thread_without_signals(F&& f) {
  sigset_t all, old;
  sigfillset(&all);
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) sigdelset(&all, s);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  std::thread t(std::forward<F>(f));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return t;
}

// Guards the attachment of bridges to links (see Databridge::close()).
std::recursive_mutex& bridge_registry() {
  static std::recursive_mutex m;
  return m;
}

}  // namespace

// ------------------------------------------------------------------------------ Datalink

struct Datalink::Observer : LinkObserver {
  explicit Observer(Datalink& d) : d(d) {}
  // Always called with d.mu_ held (from the I/O thread's dispatch or from an API call).
  void on_readable() override {
    Message m;
    d.peek_locked(m);  // pops a leading END at once, so it gets acknowledged
    d.notify_locked();
  }
  void on_writable() override { d.notify_locked(); }
  void on_event(LinkEvent, const std::string&, const Error*) override { d.notify_locked(); }
  Datalink& d;
};

Datalink::Datalink() = default;

std::unique_ptr<Datalink> Datalink::create(LinkOptions lo, Error* error) {
  std::unique_ptr<Datalink> d(new Datalink());
  d->observer_ = std::make_unique<Observer>(*d);
  bool listen = lo.listen;
  std::uint16_t dial_port = lo.endpoint.port;
  d->link_ = std::make_unique<Link>(d->reactor_, std::move(lo), d->observer_.get());
  if (auto st = d->link_->start(); !st) {
    if (error) *error = st.error();
    d->stopped_ = true;
    return nullptr;
  }
  d->port_ = listen ? port_of(d->link_->local_address()) : dial_port;
  d->reactor_.set_dispatch_mutex(&d->mu_);
  d->reactor_.on_wake([p = d.get()] { p->wake_pending_ = false; });
  d->thread_ = start_thread_without_signals([p = d.get()] { p->run(); });
  return d;
}

namespace {
LinkOptions base_options(int timeout_ms, const DatalinkOptions& o) {
  LinkOptions lo;
  lo.proto = o.proto;
  lo.timeout_ms = timeout_ms;
  lo.keepalive_ms = o.keepalive_ms;
  lo.max_message = o.max_message;
  lo.drop_negative_ts = o.drop_negative_ts;
  lo.reconnect_s = o.reconnect_s;
  lo.wait_s = o.reconnect_s;  // the first connect (or the first peer) is awaited as long
  lo.window = o.window;
  lo.await_peer_end = false;  // classic: our side is done once everything is written
  lo.linger_ms = 1000;
  lo.tls.psk_file = o.psk_file;  // checked and read by the link's start (auth or usage errors)
  return lo;
}
}  // namespace

std::unique_ptr<Datalink> Datalink::server(std::uint16_t port, int timeout_ms, DatalinkOptions options,
                                           Error* error) {
  LinkOptions lo = base_options(timeout_ms, options);
  lo.listen = true;
  lo.endpoint.kind = Endpoint::Kind::tcp;
  lo.endpoint.port = port;
  auto d = create(std::move(lo), error);
  if (d) d->close_timeout_ms_ = options.close_timeout_ms;
  return d;
}

std::unique_ptr<Datalink> Datalink::server(const std::string& listen_endpoint, int timeout_ms,
                                           DatalinkOptions options, Error* error) {
  auto ep = parse_listen_endpoint(listen_endpoint);
  if (!ep) {
    if (error) *error = ep.error();
    return nullptr;
  }
  LinkOptions lo = base_options(timeout_ms, options);
  lo.listen = true;
  lo.endpoint = *ep;
  auto d = create(std::move(lo), error);
  if (d) d->close_timeout_ms_ = options.close_timeout_ms;
  return d;
}

std::unique_ptr<Datalink> Datalink::client(const std::string& host, std::uint16_t port, int timeout_ms,
                                           DatalinkOptions options, Error* error) {
  if (options.proto == Proto::automatic) {
    if (error) {
      *error = make_error(ErrorKind::usage, "proto auto",
                          "only a server can detect its peer's protocol; a client needs native or classic");
    }
    return nullptr;
  }
  if (host.empty() || port == 0) {
    if (error) *error = make_error(ErrorKind::usage, "client", "a host and a non-zero port are needed");
    return nullptr;
  }
  LinkOptions lo = base_options(timeout_ms, options);
  lo.listen = false;
  lo.endpoint.kind = Endpoint::Kind::tcp;
  lo.endpoint.host = host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') lo.endpoint.host = host.substr(1, host.size() - 2);
  lo.endpoint.port = port;
  auto d = create(std::move(lo), error);
  if (d) d->close_timeout_ms_ = options.close_timeout_ms;
  return d;
}

Datalink::~Datalink() { close(); }

void Datalink::run() {
  std::unique_lock<std::mutex> lk(mu_);
  // run_once() releases mu_ while it is blocked in poll(2).
  while (!stop_) reactor_.run_once();
}

void Datalink::wake_locked() {
  if (wake_pending_ || stopped_) return;
  wake_pending_ = true;
  reactor_.wake();
}

void Datalink::notify_locked() {
  cv_.notify_all();
  for (Databridge* b : bridges_) b->poke();
}

bool Datalink::peek_locked(Message& m) const {
  auto* self = const_cast<Datalink*>(this);
  bool was = link_->peer_finished();
  bool got = link_->peek(m);
  if (!was && link_->peer_finished()) self->wake_locked();  // the END needs its ack
  return got;
}

bool Datalink::input_done_locked() const {
  if (!usable_locked()) return true;
  return link_->wire_proto() != Proto::classic && link_->peer_finished();
}

bool Datalink::isReady() const {
  std::lock_guard<std::mutex> lk(mu_);
  return usable_locked() && link_->ready();
}

bool Datalink::write(const void* payload, std::size_t size, double timestamp) {
  return write_for(payload, size, timestamp, -1) == 1;
}

bool Datalink::write(const void* payload, std::size_t size) {
  return write_for(payload, size, unix_now(), -1) == 1;
}

int Datalink::write_for(const void* payload, std::size_t size, double timestamp, int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  auto deadline = deadline_after(timeout_ms);
  std::span<const std::uint8_t> bytes(static_cast<const std::uint8_t*>(payload), size);
  while (true) {
    if (!usable_locked()) {
      last_error_ = link_->failure() ? *link_->failure() : make_error(ErrorKind::cancelled, "write", "link is closed");
      return -1;
    }
    Error err;
    if (link_->try_send(bytes, timestamp, &err)) {
      wake_locked();
      return 1;
    }
    if (!err.context.empty()) {
      last_error_ = err;
      return -1;
    }
    auto now = Clock::now();
    if (deadline && now >= *deadline) return 0;
    auto until = now + kSlice;
    if (deadline && *deadline < until) until = *deadline;
    cv_.wait_until(lk, until);
  }
}

bool Datalink::hasData() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopped_ || closing_) return false;
  Message m;
  return peek_locked(m);
}

bool Datalink::peer_finished() const {
  std::lock_guard<std::mutex> lk(mu_);
  Message m;
  if (!stopped_) peek_locked(m);
  return link_->wire_proto() != Proto::classic && link_->peer_finished() && link_->available() == 0;
}

bool Datalink::wait_message_locked(std::unique_lock<std::mutex>& lk, int timeout_ms, Message& m) {
  auto deadline = deadline_after(timeout_ms);
  while (true) {
    if (stopped_ || closing_) return false;
    if (peek_locked(m)) return true;
    if (input_done_locked()) return false;
    auto now = Clock::now();
    if (deadline && now >= *deadline) return false;
    auto until = now + kSlice;
    if (deadline && *deadline < until) until = *deadline;
    cv_.wait_until(lk, until);
  }
}

std::optional<std::size_t> Datalink::next_size(int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  Message m;
  if (!wait_message_locked(lk, timeout_ms, m)) return std::nullopt;
  return m.payload.size();
}

bool Datalink::read_into(void* dst, std::size_t cap, std::size_t* size, double* timestamp, bool exact) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopped_ || closing_) return false;
  Message m;
  if (!peek_locked(m)) return false;
  if (size) *size = m.payload.size();
  if (timestamp) *timestamp = m.timestamp;
  if (exact ? m.payload.size() != cap : m.payload.size() > cap) return false;
  if (!m.payload.empty()) std::memcpy(dst, m.payload.data(), m.payload.size());
  link_->consume();
  peek_locked(m);  // an END right behind it is acknowledged at once
  wake_locked();   // acks, and reading may resume
  return true;
}

std::optional<Datalink::Received> Datalink::read(int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  Message m;
  if (!wait_message_locked(lk, timeout_ms, m)) return std::nullopt;
  Received r{std::vector<std::uint8_t>(m.payload.begin(), m.payload.end()), m.timestamp};
  link_->consume();
  peek_locked(m);  // an END right behind it is acknowledged at once
  wake_locked();
  return r;
}

bool Datalink::writeKeepAlive() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!usable_locked() || !link_->ready()) return false;
  link_->send_keepalive();
  wake_locked();
  return true;
}

bool Datalink::flush(int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  auto deadline = deadline_after(timeout_ms);
  while (true) {
    if (link_->queued_bytes() == 0) return true;
    if (!usable_locked()) return false;
    auto now = Clock::now();
    if (deadline && now >= *deadline) return false;
    auto until = now + kSlice;
    if (deadline && *deadline < until) until = *deadline;
    cv_.wait_until(lk, until);
  }
}

std::optional<Error> Datalink::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return link_->failure();
}

std::optional<Error> Datalink::last_error() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (last_error_) return last_error_;
  return link_->failure();
}

LinkStats Datalink::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return link_->stats();
}

void Datalink::close_bridges() {
  std::lock_guard<std::recursive_mutex> reg(bridge_registry());
  std::vector<Databridge*> attached;
  {
    std::lock_guard<std::mutex> lk(mu_);
    attached = bridges_;
  }
  for (Databridge* b : attached) b->close();
}

void Datalink::close() {
  std::lock_guard<std::mutex> once(close_mu_);
  if (stopped_ && !thread_.joinable()) return;
  close_bridges();
  {
    std::unique_lock<std::mutex> lk(mu_);
    closing_ = true;
    cv_.notify_all();
    if (thread_.joinable() && !link_->closed() && (link_->ready() || link_->queued_bytes() > 0)) {
      // Graceful part: end our direction, wait for its acknowledgement, and when the peer
      // ended too, for the orderly shutdown of the connection (Link completion).
      link_->finish();
      wake_locked();
      auto deadline = Clock::now() + std::chrono::milliseconds(std::max(0, close_timeout_ms_));
      std::optional<Clock::time_point> finished_at;
      while (!link_->closed()) {
        Message m;
        peek_locked(m);  // pops the peer's END once all its messages were read
        auto now = Clock::now();
        if (now >= deadline) break;
        // Disconnected: wait for the peer to come back only while data of ours is at stake
        // (more than our END frame), and not at all once the peer ended and left.
        if (!link_->ready() &&
            (link_->peer_finished() || link_->queued_bytes() <= (link_->wire_proto() == Proto::classic ? 0 : frame::kHeaderSize))) {
          break;
        }
        if (link_->finished()) {
          bool peer_done = link_->peer_finished() || link_->wire_proto() == Proto::classic;
          if (!finished_at) finished_at = now;
          // The peer has not ended its direction: do not wait for it beyond a short grace.
          if (!peer_done && now - *finished_at >= kPeerEndGrace) break;
          // Classic: everything is written; give the peer the grace to close first.
          if (link_->wire_proto() == Proto::classic && now - *finished_at >= kPeerEndGrace) break;
        }
        auto until = std::min(deadline, now + 20ms);
        cv_.wait_until(lk, until);
      }
    }
    stop_ = true;
    stopped_ = true;
    wake_pending_ = false;
  }
  reactor_.wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mu_);
  link_->close();
  cv_.notify_all();
}

// ------------------------------------------------------------------------------ Databridge

Databridge::Databridge(Datalink& left, Datalink& right) : left_(&left), right_(&right) {
  {
    std::lock_guard<std::recursive_mutex> reg(bridge_registry());
    for (Datalink* d : {left_, right_}) {
      std::lock_guard<std::mutex> lk(d->mu_);
      if (std::find(d->bridges_.begin(), d->bridges_.end(), this) == d->bridges_.end()) {
        d->bridges_.push_back(this);
      }
    }
  }
  thread_ = start_thread_without_signals([this] { run(); });
}

Databridge::~Databridge() { close(); }

void Databridge::poke() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_ = true;
  }
  cv_.notify_one();
}

void Databridge::close() {
  std::lock_guard<std::recursive_mutex> reg(bridge_registry());
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  detach();
}

void Databridge::detach() {
  for (Datalink** side : {&left_, &right_}) {
    Datalink* d = *side;
    if (!d) continue;
    std::lock_guard<std::mutex> lk(d->mu_);
    std::erase(d->bridges_, this);
  }
  left_ = right_ = nullptr;
}

std::uint64_t Databridge::forwarded() const {
  std::lock_guard<std::mutex> lk(mu_);
  return forwarded_;
}

std::uint64_t Databridge::dropped() const {
  std::lock_guard<std::mutex> lk(mu_);
  return dropped_;
}

void Databridge::run() {
  while (true) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_) return;
      pending_ = false;
    }
    bool moved = pump(*left_, *right_);
    if (left_ != right_) moved = pump(*right_, *left_) || moved;
    if (moved) continue;
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, kSlice, [this] { return pending_ || stop_; });
  }
}

bool Databridge::pump(Datalink& from, Datalink& to) {
  std::unique_lock<std::mutex> a(from.mu_, std::defer_lock);
  std::unique_lock<std::mutex> b;
  if (&from == &to) {
    a.lock();
  } else {
    b = std::unique_lock<std::mutex>(to.mu_, std::defer_lock);
    std::lock(a, b);
  }
  if (!from.usable_locked() || !to.usable_locked()) return false;
  std::uint64_t moved = 0, dropped = 0;
  std::size_t bytes = 0;
  Message m;
  // Bounded batches: the links' I/O threads wait while we hold their locks.
  while (moved + dropped < 256 && bytes < (16u << 20) && from.peek_locked(m)) {
    Error err;
    if (!to.link_->try_send(m.payload, m.timestamp, &err)) {
      if (err.kind == ErrorKind::too_large && !err.context.empty()) {
        to.last_error_ = err;
        from.link_->consume();
        ++dropped;
        continue;
      }
      break;  // no room: the message stays until `to` acknowledges (backpressure)
    }
    bytes += m.payload.size();
    from.link_->consume();
    ++moved;
  }
  if (moved + dropped == 0) return false;
  from.peek_locked(m);
  from.wake_locked();
  to.wake_locked();
  std::lock_guard<std::mutex> lk(mu_);
  forwarded_ += moved;
  dropped_ += dropped;
  return true;
}

}  // namespace dl
