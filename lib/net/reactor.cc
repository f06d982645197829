#include "lib/net/reactor.h"

#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace dl {

// poll(2) and epoll(7) share their bit values, so revents pass through unchanged.
static_assert(POLLIN == EPOLLIN && POLLOUT == EPOLLOUT && POLLPRI == EPOLLPRI &&
              POLLERR == EPOLLERR && POLLHUP == EPOLLHUP && POLLRDHUP == EPOLLRDHUP);

namespace {

constexpr std::uint32_t kInterestBits = POLLIN | POLLOUT | POLLPRI | POLLRDHUP;

std::uint64_t pack(int fd, std::uint32_t gen) {
  return (static_cast<std::uint64_t>(gen) << 32) | static_cast<std::uint32_t>(fd);
}

using HeapEntry = std::pair<Clock::time_point, Reactor::Id>;
// std::*_heap build max-heaps; ordering by "greater" gives the earliest (then lowest id) on top.
constexpr auto kLater = std::greater<HeapEntry>();

timespec until(Clock::time_point deadline) {
  auto d = std::max(Clock::duration::zero(), deadline - Clock::now());
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(std::min<long long>(ns / 1'000'000'000, 1LL << 40));
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

}  // namespace

Reactor::Reactor()
    : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      events_(128) {
  watch(wake_fd_.get(), POLLIN, [this](short) {
    std::uint64_t v;
    while (::read(wake_fd_.get(), &v, sizeof v) > 0) {
    }
    if (wake_cb_) wake_cb_();
  });
}

Reactor::~Reactor() = default;

std::uint32_t Reactor::wanted(const FdEntry& e) const {
  std::uint32_t w = 0;
  for (Id id : e.watches) {
    auto it = watches_.find(id);
    if (it != watches_.end()) w |= static_cast<std::uint16_t>(it->second.events);
  }
  return w & kInterestBits;
}

void Reactor::mark_dirty(int fd, FdEntry& e) {
  if (e.dirty) return;
  e.dirty = true;
  dirty_.push_back(fd);
}

Reactor::Id Reactor::watch(int fd, short events, IoCallback cb) {
  Id id = next_id_++;
  watches_.emplace(id, Watch{fd, events, std::move(cb)});
  if (fd < 0) return id;  // poll(2) ignores negative descriptors; so do we
  auto [it, fresh] = fds_.try_emplace(fd);
  if (fresh) it->second.gen = next_gen_++;
  it->second.watches.push_back(id);
  if (events != 0) mark_dirty(fd, it->second);
  return id;
}

void Reactor::set_events(Id id, short events) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  Watch& w = it->second;
  if (w.events == events) return;
  w.events = events;
  if (w.fd < 0) return;
  FdEntry& e = fds_[w.fd];
  // Only more interest needs the kernel told before the next wait; less is noticed lazily.
  if ((static_cast<std::uint16_t>(events) & kInterestBits & ~e.registered) != 0) mark_dirty(w.fd, e);
}

void Reactor::forget(int fd, FdEntry& e) {
  if (e.in_epoll) {
    // Eagerly, while the descriptor is (normally) still open: a registration left behind
    // would outlive a closed fd number and report events for a file nobody watches.
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
    ++interest_changes_;
  }
  if (e.unpollable || e.invalid) std::erase(always_ready_, fd);
  fds_.erase(fd);
}

void Reactor::unwatch(Id id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  int fd = it->second.fd;
  watches_.erase(it);
  if (fd < 0) return;
  auto f = fds_.find(fd);
  if (f == fds_.end()) return;
  std::erase(f->second.watches, id);
  if (f->second.watches.empty()) forget(fd, f->second);
}

void Reactor::apply(int fd, FdEntry& e, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = pack(fd, e.gen);
  if (events == 0) {
    // Interest 0 would still report errors and hang-ups: leave the set instead.
    if (e.in_epoll) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
    ++interest_changes_;
    e.in_epoll = false;
    e.registered = 0;
    return;
  }
  int op = e.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  int rc = ::epoll_ctl(epoll_fd_.get(), op, fd, &ev);
  ++interest_changes_;
  if (rc != 0 && op == EPOLL_CTL_MOD && errno == ENOENT) {
    // The fd was closed and its number reused behind our back: register the new file.
    op = EPOLL_CTL_ADD;
    rc = ::epoll_ctl(epoll_fd_.get(), op, fd, &ev);
  }
  if (rc != 0 && op == EPOLL_CTL_ADD && errno == EEXIST) {
    rc = ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev);
  }
  if (rc == 0) {
    e.in_epoll = true;
    e.registered = events;
    if (e.unpollable || e.invalid) std::erase(always_ready_, fd);
    e.unpollable = e.invalid = false;
    return;
  }
  e.in_epoll = false;
  e.registered = 0;
  bool was = e.unpollable || e.invalid;
  if (errno == EPERM) {
    e.unpollable = true;  // regular files and the like: poll(2) calls them always ready
  } else {
    e.invalid = true;  // EBADF: report POLLNVAL as poll(2) would
  }
  if (!was) always_ready_.push_back(fd);
}

void Reactor::sync_interest() {
  // Indexing, not iterators: apply() never adds to dirty_, but be robust anyway.
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    int fd = dirty_[i];
    auto it = fds_.find(fd);
    if (it == fds_.end()) continue;
    FdEntry& e = it->second;
    e.dirty = false;
    std::uint32_t w = wanted(e);
    if (e.unpollable || e.invalid) continue;  // settled for as long as the entry lives
    if ((w & ~e.registered) != 0) apply(fd, e, w);
  }
  dirty_.clear();
}

Reactor::Id Reactor::at(Clock::time_point when, Callback cb) {
  Id id = next_id_++;
  timers_.emplace(id, std::make_pair(when, std::move(cb)));
  timer_heap_.emplace_back(when, id);
  std::push_heap(timer_heap_.begin(), timer_heap_.end(), kLater);
  return id;
}

void Reactor::cancel(Id id) {
  if (timers_.erase(id) == 0) return;
  // The heap entry stays until it surfaces; rebuild when dead entries dominate.
  if (timer_heap_.size() > 64 && timer_heap_.size() > 4 * timers_.size()) {
    timer_heap_.clear();
    for (auto& [tid, t] : timers_) timer_heap_.emplace_back(t.first, tid);
    std::make_heap(timer_heap_.begin(), timer_heap_.end(), kLater);
  }
}

std::optional<Clock::time_point> Reactor::next_timer() {
  while (!timer_heap_.empty()) {
    auto [when, id] = timer_heap_.front();
    auto it = timers_.find(id);
    if (it != timers_.end() && it->second.first == when) return when;
    std::pop_heap(timer_heap_.begin(), timer_heap_.end(), kLater);
    timer_heap_.pop_back();
  }
  return std::nullopt;
}

void Reactor::fire_due_timers() {
  if (timer_heap_.empty()) return;
  // Only timers due now and armed before this point fire: one re-armed in the past by a
  // callback waits for the next round, so a confused component cannot spin in here.
  auto now = Clock::now();
  std::vector<Id> due;
  while (!timer_heap_.empty() && timer_heap_.front().first <= now) {
    Id id = timer_heap_.front().second;
    std::pop_heap(timer_heap_.begin(), timer_heap_.end(), kLater);
    timer_heap_.pop_back();
    if (timers_.count(id)) due.push_back(id);
  }
  for (Id id : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled by an earlier callback of this round
    Callback cb = std::move(it->second.second);
    timers_.erase(it);
    cb();
  }
}

Reactor::Id Reactor::before_poll(Callback cb) {
  Id id = next_id_++;
  before_poll_.emplace_back(id, std::move(cb));
  return id;
}

void Reactor::remove_before_poll(Id id) {
  std::erase_if(before_poll_, [id](const auto& p) { return p.first == id; });
}

int Reactor::wait(Clock::time_point deadline, bool ready_now) {
  // deadline == time_point::max(): no deadline.
  const int max = static_cast<int>(events_.size());
  const bool forever = deadline == Clock::time_point::max();
  if (busy_poll_ || ready_now) {
    timespec zero{};
    for (;;) {
      int n = have_pwait2_ ? ::epoll_pwait2(epoll_fd_.get(), events_.data(), max, &zero, nullptr)
                           : ::epoll_wait(epoll_fd_.get(), events_.data(), max, 0);
      if (n < 0 && errno == ENOSYS && have_pwait2_) {
        have_pwait2_ = false;
        continue;
      }
      if (n != 0 || ready_now || (!forever && Clock::now() >= deadline)) return n;
    }
  }
  if (have_pwait2_) {
    timespec ts = forever ? timespec{} : until(deadline);
    int n = ::epoll_pwait2(epoll_fd_.get(), events_.data(), max, forever ? nullptr : &ts, nullptr);
    if (!(n < 0 && errno == ENOSYS)) return n;
    have_pwait2_ = false;  // a kernel (or seccomp filter) without it: whole milliseconds
  }
  int timeout_ms = -1;
  if (!forever) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 1 << 30));
  }
  return ::epoll_wait(epoll_fd_.get(), events_.data(), max, timeout_ms);
}

void Reactor::dispatch(int fd, std::uint32_t gen, short revents, bool from_kernel) {
  auto f = fds_.find(fd);
  if (f == fds_.end() || f->second.gen != gen) return;  // unwatched (or replaced) meanwhile
  FdEntry& e = f->second;
  std::uint32_t w = wanted(e);
  if (from_kernel) {
    auto rev = static_cast<std::uint16_t>(revents);
    if (w == 0) {
      apply(fd, e, 0);  // parked: leave the set until someone wants events again
      return;
    }
    if ((rev & kInterestBits & ~w) != 0) apply(fd, e, w);  // the lazy half of set_events
  }
  // Callbacks may unwatch any watch of this fd (or all of them): iterate over a copy.
  std::vector<Id> ids = e.watches;
  for (Id id : ids) {
    auto it = watches_.find(id);
    if (it == watches_.end() || it->second.fd != fd || it->second.events == 0) continue;
    auto f2 = fds_.find(fd);
    if (f2 == fds_.end() || f2->second.gen != gen) return;
    short mine = static_cast<short>(revents & (it->second.events | POLLERR | POLLHUP | POLLNVAL));
    if (mine == 0) continue;
    IoCallback cb = it->second.cb;  // copy: the callback may unwatch itself
    cb(mine);
  }
}

void Reactor::run_once(std::optional<Clock::duration> max_wait) {
  pass_requested_ = false;
  // Hooks may register or remove hooks: iterate over a snapshot of ids.
  if (!before_poll_.empty()) {
    std::vector<Id> hooks;
    hooks.reserve(before_poll_.size());
    for (auto& [id, cb] : before_poll_) hooks.push_back(id);
    for (Id id : hooks) {
      auto it = std::find_if(before_poll_.begin(), before_poll_.end(),
                             [id](const auto& p) { return p.first == id; });
      if (it != before_poll_.end()) {
        Callback cb = it->second;  // copy: the hook may remove itself
        cb();
      }
    }
  }

  if (slack_request_) {
    // 0 asks prctl for the thread's default slack back.
    ::prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(slack_request_->count()), 0, 0, 0);
    slack_request_.reset();
  }
  sync_interest();
  bool ready_now = false;
  for (int fd : always_ready_) {
    auto it = fds_.find(fd);
    if (it != fds_.end() && wanted(it->second) != 0) ready_now = true;
  }
  std::optional<Clock::time_point> deadline = next_timer();
  if (max_wait) {
    auto limit = *max_wait >= Clock::time_point::max() - Clock::now()
                     ? Clock::time_point::max()
                     : Clock::now() + *max_wait;
    if (!deadline || limit < *deadline) deadline = limit;
  }

  if (dispatch_mutex_) dispatch_mutex_->unlock();
  int n = wait(deadline.value_or(Clock::time_point::max()), ready_now || pass_requested_);
  if (dispatch_mutex_) dispatch_mutex_->lock();

  for (int i = 0; i < n; ++i) {
    std::uint64_t data = events_[static_cast<std::size_t>(i)].data.u64;
    dispatch(static_cast<int>(static_cast<std::uint32_t>(data)), static_cast<std::uint32_t>(data >> 32),
             static_cast<short>(events_[static_cast<std::size_t>(i)].events), true);
  }
  if (n == static_cast<int>(events_.size()) && events_.size() < 4096) events_.resize(events_.size() * 2);

  if (ready_now) {
    std::vector<std::pair<int, std::uint32_t>> ready;
    for (int fd : always_ready_) {
      auto it = fds_.find(fd);
      if (it != fds_.end()) ready.emplace_back(fd, it->second.gen);
    }
    for (auto [fd, gen] : ready) {
      auto it = fds_.find(fd);
      if (it == fds_.end() || it->second.gen != gen) continue;
      short rev = it->second.invalid ? POLLNVAL : static_cast<short>(POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
      dispatch(fd, gen, rev, false);
    }
  }

  fire_due_timers();
}

void Reactor::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wake_fd_.get(), &one, sizeof one);
}

void Timer::arm(Clock::time_point when) {
  when_ = when;
  if (id_ != 0 && scheduled_ <= when) return;  // the earlier wake-up will look again
  if (id_ != 0) r_.cancel(id_);
  scheduled_ = when;
  id_ = r_.at(when, [this] { fire(); });
}

void Timer::fire() {
  id_ = 0;
  if (when_ > scheduled_ && when_ > Clock::now()) {
    scheduled_ = when_;
    id_ = r_.at(when_, [this] { fire(); });
    return;
  }
  cb_();
}

void Timer::cancel() {
  if (id_ != 0) r_.cancel(id_);
  id_ = 0;
}

}  // namespace dl
