// Helpers for the unit tests of net and the layers above: bounded reactor loops and socket
// pairs. Test-only (testonly in BUILD); never linked into a tool.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "lib/base/fd.h"
#include "lib/net/reactor.h"

namespace dl::testing {

// Runs the reactor until pred() holds or `limit` passes (each round waits at most 20 ms).
template <class Pred>
bool run_until(Reactor& r, Pred pred, Clock::duration limit = std::chrono::seconds(10)) {
  auto end = Clock::now() + limit;
  while (!pred() && Clock::now() < end) r.run_once(std::chrono::milliseconds(20));
  return pred();
}

// A connected AF_UNIX stream pair; `flags` e.g. SOCK_NONBLOCK. Both -1 on failure.
inline std::pair<Fd, Fd> socket_pair(int flags = 0) {
  int sv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0, sv) != 0) return {};
  return {Fd(sv[0]), Fd(sv[1])};
}

// A blocking TCP connection to 127.0.0.1:port (a hand-made peer or stranger); -1 on failure.
// The caller closes it.
inline int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A TCP relay on the test's reactor between whoever dials port() and 127.0.0.1:target, as the
// network in the middle: it forwards both ways until told to hold a direction (bytes stay
// unread in that side's connection) or to cut (both connections reset, what was held is
// lost). It accepts again after a cut. Small transfers only: writes block briefly.
class CutRelay {
 public:
  CutRelay(Reactor& r, std::uint16_t target) : r_(r), target_(target) {
    listener_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_.get(), 8) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      listener_.reset();
      return;
    }
    port_ = ntohs(a.sin_port);
    accept_watch_ = r_.watch(listener_.get(), POLLIN, [this](short) { on_accept(); });
  }
  ~CutRelay() {
    drop(false);
    if (accept_watch_) r_.unwatch(accept_watch_);
  }
  CutRelay(const CutRelay&) = delete;
  CutRelay& operator=(const CutRelay&) = delete;

  std::uint16_t port() const { return port_; }  // 0: setting up failed
  int connections() const { return connections_; }
  // Holds the target's (or the dialer's) direction from the first moment `when()` holds,
  // checked before each forward: what that side writes in the same reactor round is held too.
  void hold_target_when(std::function<bool()> when) { hold_when_[1] = std::move(when); }
  void hold_dialer_when(std::function<bool()> when) { hold_when_[0] = std::move(when); }
  // Resets both connections; the next one is forwarded freely (holds are cleared).
  void cut() {
    drop(true);
    hold_ = {false, false};
    hold_when_ = {};
  }

 private:
  void on_accept() {
    Fd in(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!in.valid()) return;
    drop(false);
    Fd out(connect_loopback(target_));
    if (!out.valid()) return;
    ::fcntl(out.get(), F_SETFL, ::fcntl(out.get(), F_GETFL) | O_NONBLOCK);
    ++connections_;
    fd_ = {std::move(in), std::move(out)};
    for (int k = 0; k < 2; ++k) watch_[k] = r_.watch(fd_[k].get(), POLLIN, [this, k](short) { forward(k); });
  }
  // From side k (0: the dialer, 1: the target) to the other.
  void forward(int k) {
    if (!hold_[k] && hold_when_[k] && hold_when_[k]()) hold_[k] = true;
    if (hold_[k]) {
      r_.set_events(watch_[k], 0);  // held: unread, and no busy loop on a readable socket
      return;
    }
    std::uint8_t buf[65536];
    ssize_t n = ::recv(fd_[k].get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      if (n == 0) ::shutdown(fd_[1 - k].get(), SHUT_WR);
      r_.set_events(watch_[k], 0);
      return;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::send(fd_[1 - k].get(), buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
      if (w > 0) {
        off += w;
      } else if (w < 0 && errno == EAGAIN) {
        pollfd p{fd_[1 - k].get(), POLLOUT, 0};
        if (::poll(&p, 1, 1000) <= 0) return;
      } else {
        return;
      }
    }
  }
  void drop(bool reset) {
    for (int k = 0; k < 2; ++k) {
      if (watch_[k]) r_.unwatch(watch_[k]);
      watch_[k] = 0;
      if (fd_[k].valid() && reset) {
        linger l{1, 0};
        ::setsockopt(fd_[k].get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      fd_[k].reset();
    }
  }

  Reactor& r_;
  std::uint16_t target_;
  std::uint16_t port_ = 0;
  Fd listener_;
  Reactor::Id accept_watch_ = 0;
  std::array<Fd, 2> fd_;
  std::array<Reactor::Id, 2> watch_{0, 0};
  std::array<bool, 2> hold_{false, false};
  std::array<std::function<bool()>, 2> hold_when_;
  int connections_ = 0;
};

// Reproducible pseudo-random payload.
inline std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed = 42) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

}  // namespace dl::testing
