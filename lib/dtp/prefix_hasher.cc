#include "lib/dtp/prefix_hasher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace dl::dtp {

PrefixHasher::PrefixHasher(int file_fd, int stream_fd)
    : fd_(file_fd),
      stream_fd_(stream_fd),
      out_(stream_fd >= 0 ? StdStream::adopt(stream_fd, /*write_side=*/true) : StdStream{}),
      wake_fd_(stream_fd >= 0 ? ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1),
      buf_(1 << 20),
      worker_([this] { loop(); }) {}

PrefixHasher::~PrefixHasher() {
  {
    std::lock_guard<std::mutex> g(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (wake_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
  worker_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void PrefixHasher::advance(std::uint64_t end) {
  {
    std::lock_guard<std::mutex> g(m_);
    if (end <= target_) return;
    target_ = end;
  }
  cv_.notify_one();
}

void PrefixHasher::lend(unsigned buffer, std::span<const Span> spans) {
  if (buffer >= kBuffers || spans.empty()) return;
  std::lock_guard<std::mutex> g(m_);
  for (const Span& s : spans) {
    if (s.len == 0 || s.offset < lent_end_ || s.offset + s.len <= done_.load()) continue;
    lent_.push_back({s, buffer});
    ++count_[buffer];
    lent_end_ = s.offset + s.len;
  }
}

void PrefixHasher::reclaim(unsigned buffer) {
  if (buffer >= kBuffers) return;
  std::unique_lock<std::mutex> lk(m_);
  busy_cv_.wait(lk, [&] { return busy_ != static_cast<int>(buffer); });
  if (count_[buffer] == 0) return;
  std::erase_if(lent_, [&](const Lent& l) { return l.buffer == buffer; });
  count_[buffer] = 0;
}

bool PrefixHasher::consume(std::span<const std::uint8_t> bytes, Error& err) {
  hash_.update(bytes);
  return stream_fd_ < 0 || write_stream(bytes, err);
}

// Writes all of `bytes` to the stream through StdStream (pipes, FIFOs and terminals on a
// private non-blocking description, sockets with MSG_DONTWAIT); when it is full the worker
// waits in poll(2), together with the destructor's wake-up: a reader that stops reading must
// not hold the worker in write(2) for good (the destructor joins it). Regular files are
// written plainly.
bool PrefixHasher::write_stream(std::span<const std::uint8_t> bytes, Error& err) {
  for (std::size_t off = 0; off < bytes.size();) {
    if (stop_.load()) {
      err = make_error(ErrorKind::cancelled, "stdout", "stopped");
      return false;
    }
    iovec v{const_cast<std::uint8_t*>(bytes.data() + off), bytes.size() - off};
    ssize_t w = out_.writev(&v, 1);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd q[2] = {{out_.poll_fd(), POLLOUT, 0}, {wake_fd_, POLLIN, 0}};
      if (::poll(q, 2, -1) < 0 && errno != EINTR) {
        err = errno_error(ErrorKind::io, "stdout", errno);
        return false;
      }
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = errno_error(ErrorKind::io, "stdout", w < 0 ? errno : EIO);
      return false;
    }
    off += static_cast<std::size_t>(w);
  }
  return true;
}

void PrefixHasher::loop() {
  constexpr std::size_t kBatch = 256;  // lent spans taken per lock
  Span batch[kBatch];
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || target_ > done_.load(); });
    if (stop_) return;
    std::uint64_t target = target_;
    std::uint64_t at = done_.load();
    Error err;
    bool bad = false;
    while (at < target && !bad) {
      // Lent spans wholly behind `at` are of no use any more.
      while (!lent_.empty() && lent_.front().span.offset + lent_.front().span.len <= at) {
        --count_[lent_.front().buffer];
        lent_.pop_front();
      }
      std::size_t k = 0;
      if (!lent_.empty() && lent_.front().span.offset <= at) {
        // Hash from the caller's buffer: a run of spans of one buffer, each continuing the
        // last, up to the target. The buffer is marked busy so reclaim() waits for us.
        unsigned buffer = lent_.front().buffer;
        // With a stream, the run is copied out first (at most buf_'s size) and the buffer
        // given back before writing: a stalled reader must not hold the caller in reclaim().
        const std::uint64_t limit = stream_fd_ >= 0 ? std::min<std::uint64_t>(target, at + buf_.size()) : target;
        std::uint64_t next = at;
        for (const Lent& l : lent_) {
          if (k == kBatch || l.buffer != buffer || l.span.offset > next || next >= limit) break;
          std::uint64_t from = std::max(next, l.span.offset);
          std::uint64_t to = std::min(l.span.offset + l.span.len, limit);
          batch[k++] = {from, l.span.bytes + (from - l.span.offset), static_cast<std::size_t>(to - from)};
          next = to;
        }
        busy_ = static_cast<int>(buffer);
        lk.unlock();
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < k; ++i) {
          if (stream_fd_ >= 0) {
            std::memcpy(buf_.data() + n, batch[i].bytes, batch[i].len);
          } else {
            hash_.update({batch[i].bytes, batch[i].len});
          }
          n += batch[i].len;
        }
        if (stream_fd_ < 0) done_.store(at + n);
        lk.lock();
        busy_ = -1;
        busy_cv_.notify_all();
        if (stream_fd_ >= 0) {
          lk.unlock();
          bad = !consume({buf_.data(), static_cast<std::size_t>(n)}, err);
          if (!bad) done_.store(at + n);
          lk.lock();
        }
        from_buffers_.fetch_add(n, std::memory_order_relaxed);
        at += n;
        continue;
      }
      // Not lent (arrived out of order, or its buffer was reclaimed): read it back.
      std::uint64_t stop_at = target;
      if (!lent_.empty()) stop_at = std::min(stop_at, lent_.front().span.offset);
      lk.unlock();
      while (at < stop_at) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), stop_at - at));
        ssize_t got = ::pread(fd_, buf_.data(), n, static_cast<off_t>(at));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          err = errno_error(ErrorKind::io, "read back the output", got < 0 ? errno : EIO);
          bad = true;
          break;
        }
        if (!consume({buf_.data(), static_cast<std::size_t>(got)}, err)) {
          bad = true;
          break;
        }
        at += static_cast<std::uint64_t>(got);
        done_.store(at);
        // Lent bytes may have come in meanwhile: look again every piece.
        if (m_.try_lock()) {
          bool lent_here = !lent_.empty() && lent_.front().span.offset <= at + buf_.size();
          m_.unlock();
          if (lent_here) break;
        }
      }
      lk.lock();
    }
    if (bad) {
      failed_ = true;
      error_ = err;
      done_cv_.notify_all();
      notify_if_due();
      return;
    }
    done_cv_.notify_all();
    notify_if_due();
  }
}

void PrefixHasher::notify_if_due() {
  if (notify_ && !stop_.load() && (failed_ || done_.load() >= notify_at_)) {
    auto cb = std::move(notify_);
    notify_ = nullptr;
    cb();
  }
}

void PrefixHasher::notify_when(std::uint64_t size, std::function<void()> cb) {
  advance(size);
  std::lock_guard<std::mutex> g(m_);
  notify_ = std::move(cb);
  notify_at_ = size;
  notify_if_due();
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
