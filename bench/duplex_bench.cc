// duplex_bench: full duplex over ONE link. A Datalink server and a Datalink client in this
// process; each side writes BYTES (in MSG-byte messages) while it reads the BYTES the other side
// writes, all at full speed at once. Prints Gbit/s each way (bytes of one direction over the time
// from the start until its reader took the last byte).
//
//   duplex_bench BYTES [MSG=1048576] [DEADLINE_S=60]
//
// A benchmark, not a test: it asserts nothing about speed. It does notice a stall (no progress
// for DEADLINE_S in total) and then says so and exits 1 without waiting for anything.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "lib/api/datalink.h"

namespace {

using Clock = std::chrono::steady_clock;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::uint64_t arg_u64(int argc, char** argv, int i, std::uint64_t fallback) {
  if (argc <= i) return fallback;
  char* end = nullptr;
  unsigned long long v = std::strtoull(argv[i], &end, 10);
  if (!end || *end || v == 0) {
    std::fprintf(stderr, "duplex_bench: not a positive whole number: %s\n", argv[i]);
    std::exit(2);
  }
  return v;
}

struct Direction {
  const char* name;
  std::atomic<std::uint64_t> sent{0}, received{0};
  Clock::time_point done{};
  std::atomic<bool> failed{false};
};

// Writes `bytes` in messages of `msg` bytes (the last may be shorter). Bounded waits so that a
// stall ends the run instead of hanging it.
void writer(dl::Datalink& link, Direction& d, std::uint64_t bytes, std::size_t msg, Clock::time_point deadline) {
  std::vector<std::uint8_t> buf(msg, 0x5a);
  while (d.sent < bytes) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(msg, bytes - d.sent));
    int r = link.write_for(buf.data(), n, 0.0, 200);
    if (r == 1) {
      d.sent += n;
    } else if (r < 0 || Clock::now() > deadline) {
      d.failed = true;
      return;
    }
  }
}

void reader(dl::Datalink& link, Direction& d, std::uint64_t bytes, std::size_t msg, Clock::time_point deadline) {
  std::vector<std::uint8_t> buf(msg);
  while (d.received < bytes) {
    std::size_t size = 0;
    double ts = 0;
    if (!link.next_size(200)) {
      if (Clock::now() > deadline || link.error()) {
        d.failed = true;
        return;
      }
      continue;
    }
    if (!link.read_into(buf.data(), buf.size(), &size, &ts)) {
      d.failed = true;
      return;
    }
    d.received += size;
  }
  d.done = Clock::now();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: duplex_bench BYTES [MSG=1048576] [DEADLINE_S=60]\n");
    return 2;
  }
  const std::uint64_t bytes = arg_u64(argc, argv, 1, 0);
  const std::size_t msg = static_cast<std::size_t>(arg_u64(argc, argv, 2, 1u << 20));
  const auto limit = std::chrono::seconds(arg_u64(argc, argv, 3, 60));
  if (msg > dl::kDefaultMaxMessage) {
    std::fprintf(stderr, "duplex_bench: MSG above the link's message limit (%u)\n", dl::kDefaultMaxMessage);
    return 2;
  }

  dl::DatalinkOptions opt;
  opt.close_timeout_ms = 2000;
  dl::Error error;
  auto server = dl::Datalink::server("127.0.0.1:0", 10000, opt, &error);
  if (!server) {
    std::fprintf(stderr, "duplex_bench: server: %s\n", error.message().c_str());
    return 1;
  }
  auto client = dl::Datalink::client("127.0.0.1", server->port(), 10000, opt, &error);
  if (!client) {
    std::fprintf(stderr, "duplex_bench: client: %s\n", error.message().c_str());
    return 1;
  }
  // Connected both ways before the clock starts (bounded: 10 s).
  for (auto until = Clock::now() + std::chrono::seconds(10); !(client->isReady() && server->isReady());) {
    if (Clock::now() > until) {
      std::fprintf(stderr, "duplex_bench: no connection within 10 s\n");
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  Direction up{"client->server"}, down{"server->client"};
  const auto t0 = Clock::now();
  const auto deadline = t0 + limit;
  std::thread threads[] = {
      std::thread(writer, std::ref(*client), std::ref(up), bytes, msg, deadline),
      std::thread(reader, std::ref(*server), std::ref(up), bytes, msg, deadline),
      std::thread(writer, std::ref(*server), std::ref(down), bytes, msg, deadline),
      std::thread(reader, std::ref(*client), std::ref(down), bytes, msg, deadline),
  };
  for (auto& t : threads) t.join();

  bool ok = true;
  for (Direction* d : {&up, &down}) {
    if (d->failed || d->received != bytes) {
      std::printf("duplex %s: STALLED or failed after %.1f s: sent %llu, received %llu of %llu bytes\n", d->name,
                  secs(Clock::now() - t0), static_cast<unsigned long long>(d->sent.load()),
                  static_cast<unsigned long long>(d->received.load()), static_cast<unsigned long long>(bytes));
      ok = false;
    } else {
      double s = secs(d->done - t0);
      std::printf("duplex %s: %llu bytes in %zu-byte messages, %.3f s, %.2f Gbit/s\n", d->name,
                  static_cast<unsigned long long>(bytes), msg, s, bytes * 8 / s / 1e9);
    }
  }
  std::fflush(stdout);
  if (!ok) std::_Exit(1);  // the links may be wedged: do not wait for their close()
  client->close();
  server->close();
  return 0;
}
