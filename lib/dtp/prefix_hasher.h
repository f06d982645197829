// PrefixHasher: hashes, on a thread of its own, the in-order prefix of a file that the caller's
// thread is filling at random offsets: the caller says how far the prefix reaches, the worker
// hashes those bytes into SHA-256 and, optionally, writes them to a stream (dtpget -o -).
// SHA-256 is the costliest per-byte step of a DTP client; off the receive thread it no longer
// slows the socket down. Bytes the caller still holds in its receive buffers can be lent to the
// worker, which hashes them from there (warm in the cache) instead of reading the file back
// (a copy out of the page cache: a tenth of the client's CPU); the rest is read back with
// pread. Not a general thread pool.
// The stream may stall (a reader that stops reading): the worker then waits in poll(2), never
// while holding a lent buffer, and destruction wakes it, so a stalled reader never keeps the
// caller from reclaiming its buffers, handling signals or returning.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "lib/base/error.h"
#include "lib/dtp/sha256.h"
#include "lib/net/stdio_stream.h"

namespace dl::dtp {

class PrefixHasher {
 public:
  // `file_fd` is read with pread and must outlive this object; `stream_fd` < 0: no stream.
  // The stream is written without blocking the worker for good (StdStream: pipes, terminals
  // and sockets take only what they can at once, then poll(2) with a wake-up for the destructor).
  PrefixHasher(int file_fd, int stream_fd);
  ~PrefixHasher();  // stops the worker (abandoning the hash) and joins it
  PrefixHasher(const PrefixHasher&) = delete;
  PrefixHasher& operator=(const PrefixHasher&) = delete;

  // Bytes [0, end) of the file are written and final. Never blocks; cheap to call often.
  void advance(std::uint64_t end);
  // File bytes that are also in the caller's buffer number `buffer` (< kBuffers), in rising
  // offset order across calls (a span starting below an earlier one's end is ignored). They
  // stay the caller's: the worker only reads them, until reclaim(buffer). Never blocks.
  struct Span {
    std::uint64_t offset;
    const std::uint8_t* bytes;
    std::size_t len;
  };
  static constexpr unsigned kBuffers = 64;
  void lend(unsigned buffer, std::span<const Span> spans);
  // The caller is about to overwrite `buffer`: blocks while the worker is hashing from it (a
  // few hundred microseconds at most); its spans not yet hashed are read from the file instead.
  void reclaim(unsigned buffer);
  // Bytes hashed from lent buffers rather than read back (for tests and statistics).
  std::uint64_t hashed_from_buffers() const { return from_buffers_.load(std::memory_order_relaxed); }
  // Blocks until `size` bytes are hashed (and streamed). Errors: io (read back or stream
  // write failed), with what failed as context. A caller that must stay responsive (the
  // stream may stall for as long as its reader likes) waits for notify_when() first.
  Result<Digest> finish(std::uint64_t size);
  // Advances to `size` and calls `cb` once, from the worker's thread (or this one, if it is
  // so already), when `size` bytes are hashed or the worker failed. `cb` must be thread-safe
  // (Reactor::wake). Not called once destruction began. Never blocks.
  void notify_when(std::uint64_t size, std::function<void()> cb);
  std::uint64_t hashed() const { return done_.load(std::memory_order_relaxed); }
  // The worker's failure, if any (a closed stdout pipe): the caller may stop early.
  std::optional<Error> failure();

 private:
  struct Lent {
    Span span;
    unsigned buffer;
  };
  void loop();
  bool consume(std::span<const std::uint8_t> bytes, Error& err);
  bool write_stream(std::span<const std::uint8_t> bytes, Error& err);
  void notify_if_due();  // with m_ held
  int fd_, stream_fd_;
  StdStream out_;              // stream_fd_ for writing without blocking for good
  int wake_fd_ = -1;           // eventfd: the destructor wakes a worker waiting on the stream
  std::function<void()> notify_;
  std::uint64_t notify_at_ = 0;
  std::deque<Lent> lent_;      // rising offsets
  std::uint64_t lent_end_ = 0;
  int busy_ = -1;              // the buffer the worker is hashing from, -1: none
  std::size_t count_[kBuffers] = {};  // spans in lent_ per buffer
  std::condition_variable busy_cv_;
  std::atomic<std::uint64_t> from_buffers_{0};
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::uint64_t target_ = 0;
  std::atomic<std::uint64_t> done_{0};
  std::atomic<bool> stop_{false};
  bool failed_ = false;
  Error error_;
  Sha256 hash_;
  std::vector<std::uint8_t> buf_;
  std::thread worker_;
};

}  // namespace dl::dtp
