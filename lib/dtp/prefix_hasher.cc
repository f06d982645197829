#include "lib/dtp/prefix_hasher.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace dl::dtp {

PrefixHasher::PrefixHasher(int file_fd, int stream_fd)
    : fd_(file_fd), stream_fd_(stream_fd), buf_(1 << 20), worker_([this] { loop(); }) {}

PrefixHasher::~PrefixHasher() {
  {
    std::lock_guard<std::mutex> g(m_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void PrefixHasher::advance(std::uint64_t end) {
  {
    std::lock_guard<std::mutex> g(m_);
    if (end <= target_) return;
    target_ = end;
  }
  cv_.notify_one();
}

void PrefixHasher::loop() {
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || target_ > done_.load(); });
    if (stop_) return;
    std::uint64_t target = target_;
    lk.unlock();
    std::uint64_t at = done_.load();
    Error err;
    bool bad = false;
    while (at < target) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), target - at));
      ssize_t got = ::pread(fd_, buf_.data(), n, static_cast<off_t>(at));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        err = errno_error(ErrorKind::io, "read back the output", got < 0 ? errno : EIO);
        bad = true;
        break;
      }
      hash_.update({buf_.data(), static_cast<std::size_t>(got)});
      for (std::size_t off = 0; stream_fd_ >= 0 && off < static_cast<std::size_t>(got);) {
        ssize_t w = ::write(stream_fd_, buf_.data() + off, static_cast<std::size_t>(got) - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          err = errno_error(ErrorKind::io, "stdout", w < 0 ? errno : EIO);
          bad = true;
          break;
        }
        off += static_cast<std::size_t>(w);
      }
      if (bad) break;
      at += static_cast<std::uint64_t>(got);
      done_.store(at);
    }
    lk.lock();
    if (bad) {
      failed_ = true;
      error_ = err;
      done_cv_.notify_all();
      return;
    }
    done_cv_.notify_all();
  }
}

std::optional<Error> PrefixHasher::failure() {
  std::lock_guard<std::mutex> g(m_);
  if (failed_) return error_;
  return std::nullopt;
}

Result<Digest> PrefixHasher::finish(std::uint64_t size) {
  advance(size);
  std::unique_lock<std::mutex> lk(m_);
  done_cv_.wait(lk, [&] { return failed_ || done_.load() >= size; });
  if (failed_) return error_;
  return hash_.finish();
}

}  // namespace dl::dtp
