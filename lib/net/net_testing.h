// Helpers for the unit tests of net and the layers above: bounded reactor loops and socket
// pairs. Test-only (testonly in BUILD); never linked into a tool.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
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

// Reproducible pseudo-random payload.
inline std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed = 42) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

}  // namespace dl::testing
