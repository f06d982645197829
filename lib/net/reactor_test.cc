#include "lib/net/reactor.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

struct Pair {
  Fd a, b;
  Pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

}  // namespace

TEST_CASE("timers fire in deadline order, ties in the order they were set") {
  Reactor r;
  std::vector<int> order;
  auto t0 = Clock::now();
  r.at(t0 + 3ms, [&] { order.push_back(3); });
  r.at(t0 + 1ms, [&] { order.push_back(1); });
  r.at(t0 + 2ms, [&] { order.push_back(20); });
  r.at(t0 + 2ms, [&] { order.push_back(21); });
  auto gone = r.at(t0 + 2ms, [&] { order.push_back(99); });
  r.cancel(gone);
  REQUIRE(run_until(r, [&] { return order.size() == 4; }));
  r.run_once(5ms);
  CHECK(order == std::vector<int>{1, 20, 21, 3});
}

TEST_CASE("a 200 us timer fires after its deadline and well before a millisecond") {
  Reactor r;
  std::vector<double> lateness_us;
  for (int i = 0; i < 21; ++i) {
    auto start = Clock::now();
    auto deadline = start + 200us;
    Clock::time_point fired{};
    r.at(deadline, [&] { fired = Clock::now(); });
    REQUIRE(run_until(r, [&] { return fired != Clock::time_point{}; }));
    CHECK(fired >= deadline);
    lateness_us.push_back(std::chrono::duration<double, std::micro>(fired - start).count());
  }
  std::sort(lateness_us.begin(), lateness_us.end());
  double median = lateness_us[lateness_us.size() / 2];
  MESSAGE("median time to fire a 200 us timer: " << median << " us");
  CHECK(median >= 200);
  CHECK(median < 700);  // poll(2)'s whole milliseconds made this 1000+
}

TEST_CASE("timer slack: set on the reactor's thread, makes short timers tighter") {
  Reactor r;
  int before = ::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  r.set_timer_slack(std::chrono::nanoseconds(1));
  r.run_once(0ms);
  CHECK(::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == 1);
  std::vector<double> late_us;
  for (int i = 0; i < 21; ++i) {
    auto deadline = Clock::now() + 100us;
    Clock::time_point fired{};
    r.at(deadline, [&] { fired = Clock::now(); });
    REQUIRE(run_until(r, [&] { return fired != Clock::time_point{}; }));
    CHECK(fired >= deadline);
    late_us.push_back(std::chrono::duration<double, std::micro>(fired - deadline).count());
  }
  std::sort(late_us.begin(), late_us.end());
  MESSAGE("median lateness of a 100 us timer with 1 ns slack: " << late_us[10] << " us");
  CHECK(late_us[10] < 500);
  r.set_timer_slack(std::chrono::nanoseconds(0));
  r.run_once(0ms);
  CHECK(::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == before);  // the thread's default again
}

TEST_CASE("run_once honours a sub-millisecond max_wait") {
  Reactor r;
  auto start = Clock::now();
  r.run_once(300us);
  auto took = Clock::now() - start;
  CHECK(took >= 300us);
  CHECK(took < 50ms);
}

TEST_CASE("many descriptors, each reported to its own callback") {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  std::size_t pairs = 1000;
  if (lim.rlim_cur < 2 * pairs + 64) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 2 * pairs + 64);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
    pairs = std::min<std::size_t>(pairs, (lim.rlim_cur - 64) / 2);
  }
  Reactor r;
  std::vector<Pair> ps(pairs);
  std::vector<int> hits(pairs, 0);
  for (std::size_t i = 0; i < pairs; ++i) {
    r.watch(ps[i].b.get(), POLLIN, [&, i](short ev) {
      CHECK((ev & POLLIN) != 0);
      char c;
      while (::read(ps[i].b.get(), &c, 1) == 1) hits[i]++;
    });
  }
  for (std::size_t i = 0; i < pairs; i += 2) REQUIRE(::write(ps[i].a.get(), "x", 1) == 1);
  REQUIRE(run_until(r, [&] {
    for (std::size_t i = 0; i < pairs; i += 2)
      if (hits[i] != 1) return false;
    return true;
  }));
  for (std::size_t i = 1; i < pairs; i += 2) CHECK(hits[i] == 0);
}

TEST_CASE("level-triggered: unread bytes are reported again") {
  Reactor r;
  Pair p;
  int calls = 0;
  r.watch(p.b.get(), POLLIN, [&](short) { ++calls; });
  REQUIRE(::write(p.a.get(), "xy", 2) == 2);
  r.run_once(100ms);
  r.run_once(100ms);
  CHECK(calls == 2);
}

TEST_CASE("unwatch inside a callback: the other watch is not called, the fd may be closed") {
  Reactor r;
  Pair p, q;
  Reactor::Id wp = 0, wq = 0;
  int p_calls = 0, q_calls = 0;
  // Whichever is dispatched first removes the other one and itself.
  wp = r.watch(p.b.get(), POLLIN, [&](short) {
    ++p_calls;
    r.unwatch(wq);
    r.unwatch(wp);
    p.b.reset();
  });
  wq = r.watch(q.b.get(), POLLIN, [&](short) {
    ++q_calls;
    r.unwatch(wp);
    r.unwatch(wq);
    q.b.reset();
  });
  REQUIRE(::write(p.a.get(), "x", 1) == 1);
  REQUIRE(::write(q.a.get(), "x", 1) == 1);
  r.run_once(100ms);
  CHECK(p_calls + q_calls == 1);
  r.run_once(10ms);
  CHECK(p_calls + q_calls == 1);
}

TEST_CASE("a parked descriptor that hangs up does not make the loop spin") {
  Reactor r;
  Pair p;
  int calls = 0;
  auto id = r.watch(p.b.get(), POLLIN, [&](short) { ++calls; });
  r.run_once(1ms);  // registered
  r.set_events(id, 0);
  p.a.reset();  // hang-up: epoll reports it even with no interest
  auto start = Clock::now();
  int rounds = 0;
  while (Clock::now() - start < 50ms) {
    r.run_once(20ms);
    ++rounds;
  }
  CHECK(calls == 0);
  CHECK(rounds <= 5);  // each round slept its 20 ms instead of returning at once
  r.set_events(id, POLLIN);
  r.run_once(100ms);
  CHECK(calls == 1);
}

TEST_CASE("turning interest off and on again without events costs no system call") {
  Reactor r;
  Pair p;
  auto id = r.watch(p.b.get(), POLLIN, [](short) {});
  r.run_once(1ms);
  auto before = r.interest_changes();
  for (int i = 0; i < 100; ++i) {
    r.set_events(id, 0);
    r.set_events(id, POLLIN);
    r.run_once(0ms);
  }
  CHECK(r.interest_changes() == before);
}

TEST_CASE("two watches on one descriptor each get what they asked for") {
  Reactor r;
  Pair p;
  int in = 0, out = 0;
  r.watch(p.b.get(), POLLIN, [&](short ev) { in += (ev & POLLIN) != 0; CHECK((ev & POLLOUT) == 0); });
  r.watch(p.b.get(), POLLOUT, [&](short ev) { out += (ev & POLLOUT) != 0; CHECK((ev & POLLIN) == 0); });
  r.run_once(100ms);
  CHECK(out == 1);
  CHECK(in == 0);
  REQUIRE(::write(p.a.get(), "x", 1) == 1);
  r.run_once(100ms);
  CHECK(in == 1);
}

TEST_CASE("regular files are always ready, as poll(2) says") {
  Reactor r;
  char path[] = "/tmp/reactor_test_XXXXXX";
  Fd f(::mkstemp(path));
  REQUIRE(f.valid());
  ::unlink(path);
  int calls = 0;
  auto id = r.watch(f.get(), POLLIN, [&](short ev) {
    CHECK((ev & POLLIN) != 0);
    ++calls;
  });
  auto start = Clock::now();
  r.run_once(1s);
  CHECK(Clock::now() - start < 500ms);
  CHECK(calls == 1);
  r.set_events(id, 0);
  r.run_once(5ms);
  CHECK(calls == 1);
}

TEST_CASE("wake from another thread ends a wait with no deadline") {
  Reactor r;
  std::atomic<int> woke{0};
  r.on_wake([&] { woke++; });
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    r.wake();
  });
  auto start = Clock::now();
  r.run_once();
  t.join();
  CHECK(woke == 1);
  CHECK(Clock::now() - start < 5s);
}

TEST_CASE("a dispatch mutex is released while waiting") {
  Reactor r;
  std::mutex mu;
  r.set_dispatch_mutex(&mu);
  std::atomic<bool> got{false};
  std::unique_lock lock(mu);
  std::thread t([&] {
    std::lock_guard g(mu);
    got = true;
    r.wake();
  });
  auto end = Clock::now() + 5s;
  while (!got && Clock::now() < end) r.run_once(100ms);
  t.join();
  CHECK(got);
}

TEST_CASE("Timer: re-arming later is lazy, the callback runs once at the last deadline") {
  Reactor r;
  int fired = 0;
  Clock::time_point at{};
  Timer t(r, [&] {
    ++fired;
    at = Clock::now();
  });
  auto start = Clock::now();
  for (int i = 1; i <= 1000; ++i) t.arm(start + 2ms + i * 10us);
  auto last = start + 2ms + 1000 * 10us;
  CHECK(t.armed());
  REQUIRE(run_until(r, [&] { return fired == 1; }));
  CHECK(at >= last);
  r.run_once(20ms);
  CHECK(fired == 1);
  CHECK(!t.armed());
  // Earlier re-arm replaces the pending wake-up; cancel stops it.
  t.arm(Clock::now() + 1s);
  t.arm(Clock::now() + 1ms);
  REQUIRE(run_until(r, [&] { return fired == 2; }, 500ms));
  t.arm(Clock::now() + 1ms);
  t.cancel();
  r.run_once(10ms);
  r.run_once(10ms);
  CHECK(fired == 2);
}

TEST_CASE("busy-poll mode still fires timers and reports descriptors") {
  Reactor r;
  r.set_busy_poll(true);
  CHECK(r.busy_poll());
  Pair p;
  bool fired = false, read = false;
  r.at(Clock::now() + 300us, [&] { fired = true; });
  REQUIRE(run_until(r, [&] { return fired; }, 1s));
  r.watch(p.b.get(), POLLIN, [&](short) { read = true; });
  REQUIRE(::write(p.a.get(), "x", 1) == 1);
  REQUIRE(run_until(r, [&] { return read; }, 1s));
}

TEST_CASE("watch before close and a reused fd number") {
  Reactor r;
  auto p = std::make_unique<Pair>();
  int old_calls = 0, new_calls = 0;
  int num = p->b.get();
  auto id = r.watch(num, POLLIN, [&](short) { ++old_calls; });
  r.run_once(1ms);
  p.reset();  // closed before unwatch: tolerated
  Pair q;     // likely reuses the numbers
  r.unwatch(id);
  r.watch(q.b.get(), POLLIN, [&](short) { ++new_calls; });
  REQUIRE(::write(q.a.get(), "x", 1) == 1);
  REQUIRE(run_until(r, [&] { return new_calls > 0; }, 1s));
  CHECK(old_calls == 0);
}
