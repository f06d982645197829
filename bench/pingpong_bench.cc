// pingpong_bench: round trips per second with one small message in flight, in one process.
//   datalink  a Datalink client writes one message, a thread on the Datalink server reads it and
//             writes it back, the client reads the echo; repeat (the embedded API, native protocol)
//   tcp       the same with plain blocking sockets: send/recv(MSG_WAITALL), TCP_NODELAY
// Both run the same way (a client thread and an echo thread) so that under the same taskset the
// only difference is the transport.
//
//   pingpong_bench datalink|tcp [MSG=64] [SECONDS=2]
//
// Prints "MODE ping-pong MSG B: N round trips in S s, R round trips/s, mean rtt U us".
// A benchmark, not a test; a lost echo (5 s) ends it with exit 1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "lib/api/datalink.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWarmup = 1000;  // round trips before the clock starts

struct Result {
  std::uint64_t trips = 0;
  double seconds = 0;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "pingpong_bench: %s: %s\n", what, errno ? std::strerror(errno) : "failed");
  std::_Exit(1);
}

// Runs `trip` kWarmup times, then as often as fits in `seconds`; trip() returns false on failure.
template <class Trip>
Result measure(double seconds, Trip trip) {
  for (int i = 0; i < kWarmup; ++i)
    if (!trip()) die("warm-up round trip");
  Result r;
  const auto t0 = Clock::now();
  const auto until = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  Clock::time_point now;
  do {
    if (!trip()) die("round trip");
    ++r.trips;
  } while ((now = Clock::now()) < until);
  r.seconds = std::chrono::duration<double>(now - t0).count();
  return r;
}

Result run_datalink(std::size_t msg, double seconds) {
  dl::DatalinkOptions opt;
  opt.close_timeout_ms = 2000;
  dl::Error error;
  auto server = dl::Datalink::server("127.0.0.1:0", 10000, opt, &error);
  if (!server) die(("server: " + error.message()).c_str());
  auto client = dl::Datalink::client("127.0.0.1", server->port(), 10000, opt, &error);
  if (!client) die(("client: " + error.message()).c_str());

  // The echo: reads a message and writes it back until the client ends its direction.
  std::thread echo([&] {
    std::vector<std::uint8_t> buf(msg);
    std::size_t size = 0;
    double ts = 0;
    while (server->next_size(-1)) {
      if (!server->read_into(buf.data(), buf.size(), &size, &ts)) return;
      if (!server->write(buf.data(), size, ts)) return;
    }
  });

  std::vector<std::uint8_t> out(msg, 'p'), in(msg);
  Result r = measure(seconds, [&] {
    std::size_t size = 0;
    double ts = 0;
    if (!client->write(out.data(), out.size(), 0.0)) return false;
    if (!client->next_size(5000)) return false;
    return client->read_into(in.data(), in.size(), &size, &ts) && size == msg;
  });
  client->close();  // the server's input ends: the echo leaves its loop
  echo.join();
  server->close();
  return r;
}

void nodelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
}

bool send_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

bool recv_all(int fd, std::uint8_t* p, std::size_t n) {
  while (n) {
    ssize_t r = ::recv(fd, p, n, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

Result run_tcp(std::size_t msg, double seconds) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(lfd, 1) < 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen) < 0)
    die("listen");

  std::thread echo([&] {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) die("accept");
    nodelay(fd);
    std::vector<std::uint8_t> buf(msg);
    while (recv_all(fd, buf.data(), msg) && send_all(fd, buf.data(), msg)) {
    }
    ::close(fd);
  });

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("connect");
  nodelay(fd);
  timeval tv{5, 0};  // a lost echo ends the run instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<std::uint8_t> out(msg, 'p'), in(msg);
  Result r = measure(seconds, [&] {
    return send_all(fd, out.data(), msg) && recv_all(fd, in.data(), msg);
  });
  ::shutdown(fd, SHUT_WR);  // the echo sees EOF and leaves
  echo.join();
  ::close(fd);
  ::close(lfd);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4 || (std::strcmp(argv[1], "datalink") && std::strcmp(argv[1], "tcp"))) {
    std::fprintf(stderr, "usage: pingpong_bench datalink|tcp [MSG=64] [SECONDS=2]\n");
    return 2;
  }
  char* end_msg = nullptr;
  char* end_secs = nullptr;
  long msg = argc > 2 ? std::strtol(argv[2], &end_msg, 10) : 64;
  double seconds = argc > 3 ? std::strtod(argv[3], &end_secs) : 2.0;
  if ((end_msg && *end_msg) || (end_secs && *end_secs) || msg < 1 || msg > (1 << 20) || !(seconds > 0 && seconds < 3600)) {
    std::fprintf(stderr, "pingpong_bench: MSG must be 1..1048576 and SECONDS in (0, 3600)\n");
    return 2;
  }
  bool tcp = argv[1][0] == 't';
  Result r = tcp ? run_tcp(static_cast<std::size_t>(msg), seconds) : run_datalink(static_cast<std::size_t>(msg), seconds);
  std::printf("%s ping-pong %ld B: %llu round trips in %.3f s, %.0f round trips/s, mean rtt %.1f us\n", argv[1], msg,
              static_cast<unsigned long long>(r.trips), r.seconds, r.trips / r.seconds, r.seconds / r.trips * 1e6);
  return 0;
}
