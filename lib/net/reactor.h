// Reactor: one epoll loop that many endpoints share in one thread: descriptors with callbacks,
// one-shot timers with nanosecond deadlines, "before poll" hooks where components flush batched
// writes, and a thread-safe wake-up. Idle means blocked in epoll_pwait2: no busy-waiting, no
// periodic ticks (unless busy-poll mode is switched on, for latency work).
//
// Level-triggered, with poll(2)'s meaning for events and revents (POLLIN, POLLOUT, POLLERR,
// POLLHUP, POLLNVAL), so a callback that leaves bytes unread is called again next round.
// Descriptors epoll refuses (regular files, /dev/null) are always ready, as poll(2) says.
// Interest changes cost no system call until they matter: turning events on is applied once
// before the next wait, turning them off only when the kernel reports an event nobody wants.
//
// Not a thread pool, not thread-safe except wake(). Callbacks may add or remove watches and
// timers freely. Unwatch a descriptor before closing it (closing first is tolerated).
#pragma once

#include <poll.h>
#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
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
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Watches `fd` for `events` (POLLIN/POLLOUT; 0 parks it). The fd stays owned by the caller.
  // Several watches on one fd are allowed; each gets the events it asked for.
  Id watch(int fd, short events, IoCallback cb);
  void set_events(Id id, short events);
  void unwatch(Id id);

  // One-shot timer; cancel() with the id. Ids are never reused. Timers due at the same
  // instant fire in the order they were set. Precision: the kernel's timer slack (~50 us).
  Id at(Clock::time_point when, Callback cb);
  void cancel(Id id);

  // Called before every poll, in registration order; the place to flush batched output.
  Id before_poll(Callback cb);
  void remove_before_poll(Id id);
  // Something gave a before-poll hook new work after that hook ran in this pass (one link's
  // flush made another link's application consume or send): the next wait must not block, so
  // that the hooks run again at once. Cheap (a flag, no syscall); reactor thread only.
  void request_pass() { pass_requested_ = true; }

  // Blocks until at least one event, timer or wake-up, or `max_wait`; dispatches them.
  void run_once(std::optional<Clock::duration> max_wait = std::nullopt);

  // Safe from any thread and from signal handlers (eventfd write).
  void wake();
  // Runs after a wake-up, on the reactor's thread.
  void on_wake(Callback cb) { wake_cb_ = std::move(cb); }

  // Optional: a mutex the caller of run_once() holds; run_once() releases it only while
  // waiting in the kernel, so other threads may act on the reactor's components in between
  // (they must hold it, and wake() afterwards). Null (the default): no locking at all.
  void set_dispatch_mutex(std::mutex* m) { dispatch_mutex_ = m; }

  // Busy-poll mode: run_once() spins on a zero-timeout epoll wait instead of sleeping, which
  // saves the wake-up latency of a sleeping thread (a few microseconds) at the price of one
  // core at 100 %. Off by default; only for latency measurements on a core of its own.
  void set_busy_poll(bool on) { busy_poll_ = on; }
  bool busy_poll() const { return busy_poll_; }

  // Timer slack of the thread that runs run_once() (prctl PR_SET_TIMERSLACK), applied at the
  // next run_once() so it lands on the right thread. The kernel's default, 50 us, makes a
  // 100 us timer fire ~70 us late; 1 ns brings that to ~20 us, for pacing and ping intervals,
  // at the price of more wake-ups system-wide. Zero restores the thread's default.
  void set_timer_slack(std::chrono::nanoseconds slack) { slack_request_ = slack; }

  // How many system calls changed the epoll interest set so far (for tests and tuning).
  std::uint64_t interest_changes() const { return interest_changes_; }

 private:
  struct Watch {
    int fd;
    short events;
    IoCallback cb;
  };
  // What the kernel knows about one descriptor number; shared by all watches on it.
  struct FdEntry {
    std::vector<Id> watches;
    std::uint32_t gen = 0;         // tells stale events of an earlier registration apart
    std::uint32_t registered = 0;  // events the kernel currently reports (0: not in epoll)
    bool in_epoll = false;
    bool unpollable = false;       // epoll refused it (regular file): always ready
    bool invalid = false;          // not an open descriptor: POLLNVAL, as poll(2) says
    bool dirty = false;
  };
  std::uint32_t wanted(const FdEntry& e) const;
  void mark_dirty(int fd, FdEntry& e);
  void sync_interest();
  void apply(int fd, FdEntry& e, std::uint32_t events);
  void forget(int fd, FdEntry& e);
  void dispatch(int fd, std::uint32_t gen, short revents, bool from_kernel);
  int wait(Clock::time_point deadline, bool ready_now);
  std::optional<Clock::time_point> next_timer();
  void fire_due_timers();

  Fd epoll_fd_;
  Fd wake_fd_;
  Callback wake_cb_;
  std::mutex* dispatch_mutex_ = nullptr;
  bool busy_poll_ = false;
  bool pass_requested_ = false;
  std::optional<std::chrono::nanoseconds> slack_request_;
  bool have_pwait2_ = true;
  Id next_id_ = 1;
  std::uint32_t next_gen_ = 1;
  std::uint64_t interest_changes_ = 0;
  std::unordered_map<Id, Watch> watches_;
  std::unordered_map<int, FdEntry> fds_;
  std::vector<int> dirty_;
  std::vector<int> always_ready_;  // fds whose entry is unpollable or invalid
  // Timers: a min-heap of (deadline, id) with lazy deletion; live ones are in timers_.
  std::vector<std::pair<Clock::time_point, Id>> timer_heap_;
  std::unordered_map<Id, std::pair<Clock::time_point, Callback>> timers_;
  std::vector<std::pair<Id, Callback>> before_poll_;
  std::vector<epoll_event> events_;
};

// A re-armable timer bound to one reactor and one callback, for components that keep a single
// "next thing to do" deadline. Re-arming later than the pending wake-up touches no reactor
// state at all: the early wake-up finds the deadline moved and sleeps again (lazy timers), so
// a component may re-arm on every read or write for free.
class Timer {
 public:
  Timer(Reactor& r, Reactor::Callback cb) : r_(r), cb_(std::move(cb)) {}
  ~Timer() { cancel(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void arm(Clock::time_point when);  // replaces any earlier deadline
  void cancel();
  bool armed() const { return id_ != 0; }
  Clock::time_point deadline() const { return when_; }

 private:
  void fire();
  Reactor& r_;
  Reactor::Callback cb_;
  Reactor::Id id_ = 0;
  Clock::time_point when_{};       // the deadline the owner asked for
  Clock::time_point scheduled_{};  // when the reactor will call us (<= when_)
};

}  // namespace dl
