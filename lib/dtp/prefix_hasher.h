// PrefixHasher: hashes, on a thread of its own, the in-order prefix of a file that the caller's
// thread is filling at random offsets: the caller says how far the prefix reaches, the worker
// reads those bytes back (page cache) into SHA-256 and, optionally, writes them to a stream
// (dtpget -o -). SHA-256 is the costliest per-byte step of a DTP client; off the receive thread
// it no longer slows the socket down. Not a general thread pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "lib/base/error.h"
#include "lib/dtp/sha256.h"

namespace dl::dtp {

class PrefixHasher {
 public:
  // `file_fd` is read with pread and must outlive this object; `stream_fd` < 0: no stream.
  PrefixHasher(int file_fd, int stream_fd);
  ~PrefixHasher();  // stops the worker (abandoning the hash) and joins it
  PrefixHasher(const PrefixHasher&) = delete;
  PrefixHasher& operator=(const PrefixHasher&) = delete;

  // Bytes [0, end) of the file are written and final. Never blocks; cheap to call often.
  void advance(std::uint64_t end);
  // Blocks until `size` bytes are hashed (and streamed). Errors: io (read back or stream
  // write failed), with what failed as context.
  Result<Digest> finish(std::uint64_t size);
  std::uint64_t hashed() const { return done_.load(std::memory_order_relaxed); }
  // The worker's failure, if any (a closed stdout pipe): the caller may stop early.
  std::optional<Error> failure();

 private:
  void loop();
  int fd_, stream_fd_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::uint64_t target_ = 0;
  std::atomic<std::uint64_t> done_{0};
  bool stop_ = false, failed_ = false;
  Error error_;
  Sha256 hash_;
  std::vector<std::uint8_t> buf_;
  std::thread worker_;
};

}  // namespace dl::dtp
