#include "lib/net/reactor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace dl {

Reactor::Reactor() : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  watch(wake_fd_.get(), POLLIN, [this](short) {
    std::uint64_t v;
    while (::read(wake_fd_.get(), &v, sizeof v) > 0) {
    }
    if (wake_cb_) wake_cb_();
  });
}

Reactor::Id Reactor::watch(int fd, short events, IoCallback cb) {
  Id id = next_id_++;
  watches_.emplace(id, Watch{fd, events, std::move(cb)});
  return id;
}

void Reactor::set_events(Id id, short events) {
  auto it = watches_.find(id);
  if (it != watches_.end()) it->second.events = events;
}

void Reactor::unwatch(Id id) { watches_.erase(id); }

Reactor::Id Reactor::at(Clock::time_point when, Callback cb) {
  Id id = next_id_++;
  timers_.emplace(id, std::make_pair(when, std::move(cb)));
  timer_order_.emplace(when, id);
  return id;
}

void Reactor::cancel_order(Id id, Clock::time_point when) {
  auto [lo, hi] = timer_order_.equal_range(when);
  for (auto o = lo; o != hi; ++o) {
    if (o->second == id) {
      timer_order_.erase(o);
      break;
    }
  }
}

void Reactor::cancel(Id id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  cancel_order(id, it->second.first);
  timers_.erase(it);
}

Reactor::Id Reactor::before_poll(Callback cb) {
  Id id = next_id_++;
  before_poll_.emplace_back(id, std::move(cb));
  return id;
}

void Reactor::remove_before_poll(Id id) {
  std::erase_if(before_poll_, [id](const auto& p) { return p.first == id; });
}

void Reactor::run_once(std::optional<Clock::duration> max_wait) {
  // Hooks may register or remove hooks: iterate over a snapshot of ids.
  std::vector<Id> hooks;
  for (auto& [id, cb] : before_poll_) hooks.push_back(id);
  for (Id id : hooks) {
    auto it = std::find_if(before_poll_.begin(), before_poll_.end(),
                           [id](const auto& p) { return p.first == id; });
    if (it != before_poll_.end()) {
      Callback cb = it->second;  // copy: the hook may remove itself
      cb();
    }
  }

  pfds_.clear();
  pids_.clear();
  for (auto& [id, w] : watches_) {
    if (w.events == 0) continue;
    pfds_.push_back(pollfd{w.fd, w.events, 0});
    pids_.push_back(id);
  }
  int timeout_ms = -1;
  auto now = Clock::now();
  std::optional<Clock::time_point> deadline;
  if (!timer_order_.empty()) deadline = timer_order_.begin()->first;
  if (max_wait && (!deadline || now + *max_wait < *deadline)) deadline = now + *max_wait;
  if (deadline) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count();
    timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 1 << 30));
  }
  if (dispatch_mutex_) dispatch_mutex_->unlock();
  int n = ::poll(pfds_.data(), pfds_.size(), timeout_ms);
  if (dispatch_mutex_) dispatch_mutex_->lock();
  if (n > 0) {
    for (std::size_t i = 0; i < pfds_.size(); ++i) {
      if (pfds_[i].revents == 0) continue;
      auto it = watches_.find(pids_[i]);
      if (it == watches_.end() || it->second.fd != pfds_[i].fd) continue;  // removed meanwhile
      IoCallback cb = it->second.cb;
      cb(pfds_[i].revents);
    }
  }
  // Only timers due now and armed before this point fire: one re-armed in the past by a
  // callback waits for the next round, so a confused component cannot spin in here.
  now = Clock::now();
  std::vector<Id> due;
  for (auto o = timer_order_.begin(); o != timer_order_.end() && o->first <= now; ++o) due.push_back(o->second);
  for (Id id : due) {
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    cancel_order(id, it->second.first);
    if (it == timers_.end()) continue;
    Callback cb = std::move(it->second.second);
    timers_.erase(it);
    cb();
  }
}

void Reactor::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wake_fd_.get(), &one, sizeof one);
}

void Timer::arm(Clock::time_point when) {
  if (id_ != 0 && when == when_) return;
  cancel();
  when_ = when;
  id_ = r_.at(when, [this] {
    id_ = 0;
    cb_();
  });
}

void Timer::cancel() {
  if (id_ != 0) r_.cancel(id_);
  id_ = 0;
}

}  // namespace dl
