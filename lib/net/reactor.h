// Reactor: one poll(2) loop that many endpoints share in one thread: descriptors with
// callbacks, one-shot timers, "before poll" hooks where components flush batched writes, and a
// thread-safe wake-up. Idle means blocked in poll: no busy-waiting, no periodic ticks.
//
// Not thread-safe except wake(). Callbacks may add or remove watches and timers freely.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "lib/base/clock.h"
#include "lib/base/fd.h"

namespace dl {

class Reactor {
 public:
  using IoCallback = std::function<void(short revents)>;
  using Callback = std::function<void()>;
  using Id = std::uint64_t;

  Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Watches `fd` for `events` (POLLIN/POLLOUT; 0 parks it). The fd stays owned by the caller.
  Id watch(int fd, short events, IoCallback cb);
  void set_events(Id id, short events);
  void unwatch(Id id);

  // One-shot timer; cancel() with the id. Ids are never reused.
  Id at(Clock::time_point when, Callback cb);
  void cancel(Id id);

  // Called before every poll, in registration order; the place to flush batched output.
  Id before_poll(Callback cb);
  void remove_before_poll(Id id);

  // Blocks until at least one event, timer or wake-up, or `max_wait`; dispatches them.
  void run_once(std::optional<Clock::duration> max_wait = std::nullopt);

  // Safe from any thread and from signal handlers (eventfd write).
  void wake();
  // Runs after a wake-up, on the reactor's thread.
  void on_wake(Callback cb) { wake_cb_ = std::move(cb); }

  // Optional: a mutex the caller of run_once() holds; run_once() releases it only while
  // blocked in poll(2), so other threads may act on the reactor's components in between (they
  // must hold it, and wake() afterwards). Null (the default): no locking at all.
  void set_dispatch_mutex(std::mutex* m) { dispatch_mutex_ = m; }

 private:
  void cancel_order(Id id, Clock::time_point when);
  struct Watch {
    int fd;
    short events;
    IoCallback cb;
  };
  Fd wake_fd_;
  Callback wake_cb_;
  std::mutex* dispatch_mutex_ = nullptr;
  Id next_id_ = 1;
  std::map<Id, Watch> watches_;
  std::multimap<Clock::time_point, Id> timer_order_;
  std::map<Id, std::pair<Clock::time_point, Callback>> timers_;
  std::vector<std::pair<Id, Callback>> before_poll_;
  std::vector<pollfd> pfds_;
  std::vector<Id> pids_;
};

// A re-armable timer bound to one reactor and one callback, for components that keep a single
// "next thing to do" deadline.
class Timer {
 public:
  Timer(Reactor& r, Reactor::Callback cb) : r_(r), cb_(std::move(cb)) {}
  ~Timer() { cancel(); }
  void arm(Clock::time_point when);  // replaces any earlier deadline
  void cancel();
  bool armed() const { return id_ != 0; }

 private:
  Reactor& r_;
  Reactor::Callback cb_;
  Reactor::Id id_ = 0;
  Clock::time_point when_{};
};

}  // namespace dl
