#include "lib/net/connector.h"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mutex>
#include <optional>
#include <thread>

#include "lib/net/net.h"

namespace dl {

// What a resolver thread hands back. Shared with the thread, so a Connector destroyed while
// a lookup is in flight leaves the thread something valid to write into.
struct Connector::ResolveJob {
  std::mutex mu;
  std::optional<Result<std::vector<SocketAddress>>> result;
  Fd event{::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
};

namespace {

// Literals and unix paths resolve without asking anybody: no thread needed.
bool resolves_locally(const Endpoint& ep) {
  if (ep.kind == Endpoint::Kind::unix_socket) return true;
  std::string host = ep.host.substr(0, ep.host.find('%'));
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

}  // namespace

Connector::Connector(Reactor& reactor, Endpoint endpoint, ConnectorOptions options, Done done)
    : reactor_(reactor),
      endpoint_(std::move(endpoint)),
      opt_(options),
      done_(std::move(done)),
      backoff_(options.backoff),
      attempt_timer_(reactor, [this] { on_attempt_timeout(); }),
      retry_timer_(reactor, [this] { round(); }) {}

Connector::~Connector() { cancel(); }

void Connector::start() {
  cancel();
  active_ = true;
  ever_resolved_ = false;
  rounds_ = 0;
  backoff_.reset();
  last_ = make_error(ErrorKind::connect, "connect " + endpoint_.to_string(), "no attempt made");
  if (!endpoint_.is_stream()) {
    finish(make_error(ErrorKind::usage, "connect " + endpoint_.to_string(),
                      "a datagram (udp:) endpoint cannot be dialed as a stream"));
    return;
  }
  round();
}

void Connector::cancel() {
  active_ = false;
  drop_attempt();
  retry_timer_.cancel();
  if (job_watch_) reactor_.unwatch(job_watch_);
  job_watch_ = 0;
  job_.reset();
  addrs_.clear();
}

void Connector::round() {
  ++rounds_;
  if (opt_.resolver) {
    on_resolved(opt_.resolver(endpoint_));
    return;
  }
  if (resolves_locally(endpoint_)) {
    on_resolved(resolve(endpoint_, false));
    return;
  }
  auto job = std::make_shared<ResolveJob>();
  if (!job->event.valid()) {
    on_resolved(resolve(endpoint_, false));  // no eventfd: resolve here rather than not at all
    return;
  }
  job_ = job;
  job_watch_ = reactor_.watch(job->event.get(), POLLIN, [this](short) {
    reactor_.unwatch(job_watch_);
    job_watch_ = 0;
    auto j = std::move(job_);
    std::optional<Result<std::vector<SocketAddress>>> r;
    {
      std::lock_guard g(j->mu);
      r = std::move(j->result);
    }
    if (r) on_resolved(std::move(*r));
  });
  std::thread([job, ep = endpoint_] {
    auto r = resolve(ep, false);
    std::lock_guard g(job->mu);
    job->result = std::move(r);
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(job->event.get(), &one, sizeof one);
  }).detach();
}

void Connector::on_resolved(Result<std::vector<SocketAddress>> addrs) {
  if (!addrs) {
    last_ = addrs.error();
    if (!ever_resolved_ && opt_.fail_fast_on_resolve) {
      finish(last_);
      return;
    }
    retry_or_finish();
    return;
  }
  ever_resolved_ = true;
  addrs_ = std::move(*addrs);
  next_addr_ = 0;
  try_next();
}

void Connector::try_next() {
  while (next_addr_ < addrs_.size()) {
    const SocketAddress& a = addrs_[next_addr_++];
    auto fd = start_connect(a);
    if (!fd) {
      last_ = fd.error();
      continue;
    }
    attempt_fd_ = std::move(*fd);
    attempt_peer_ = a;
    attempt_watch_ = reactor_.watch(attempt_fd_.get(), POLLOUT, [this](short) { on_connect_ready(); });
    auto now = Clock::now();
    auto limit = opt_.deadline == Clock::time_point::max() || opt_.deadline - now > kLastAttemptGrace
                     ? opt_.deadline
                     : now + kLastAttemptGrace;
    auto until = opt_.attempt_timeout >= limit - now ? limit : now + opt_.attempt_timeout;
    attempt_timer_.arm(until);
    return;
  }
  retry_or_finish();
}

void Connector::drop_attempt() {
  attempt_timer_.cancel();
  if (attempt_watch_) reactor_.unwatch(attempt_watch_);
  attempt_watch_ = 0;
  attempt_fd_.reset();
}

void Connector::on_connect_ready() {
  auto st = finish_connect(attempt_fd_.get(), attempt_peer_);
  if (st) {
    Connected c{std::move(attempt_fd_), attempt_peer_};
    drop_attempt();
    finish(std::move(c));
    return;
  }
  last_ = st.error();
  drop_attempt();
  try_next();
}

void Connector::on_attempt_timeout() {
  last_ = make_error(ErrorKind::connect, "connect " + attempt_peer_.to_string(), "timed out");
  drop_attempt();
  try_next();
}

void Connector::retry_or_finish() {
  auto now = Clock::now();
  if (now >= opt_.deadline) {
    finish(last_);
    return;
  }
  auto delay = backoff_.next();
  auto when = opt_.deadline - now <= delay ? opt_.deadline : now + delay;
  retry_timer_.arm(when);
}

void Connector::finish(Result<Connected> r) {
  active_ = false;
  drop_attempt();
  retry_timer_.cancel();
  addrs_.clear();
  Done cb = done_;  // a copy: the callback may destroy us, or start() again
  cb(std::move(r));
}

}  // namespace dl
