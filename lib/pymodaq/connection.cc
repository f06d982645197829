#include "lib/pymodaq/connection.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>


namespace dl::pymodaq {

namespace {
constexpr std::size_t kReadSlice = 256u << 10;
}

Connection::Connection(Reactor& r, Fd fd, std::string peer, Dialect d, Limits limits, Callbacks cb)
    : Connection(r, Stream::from_fd(r, std::move(fd)), std::move(peer), d, limits, std::move(cb)) {}

Connection::Connection(Reactor& r, std::unique_ptr<TlsSocket> socket, std::string peer, Dialect d, Limits limits,
                       Callbacks cb)
    : Connection(r, Stream::from_layer(r, std::move(socket)), std::move(peer), d, limits, std::move(cb)) {}

Connection::Connection(Reactor& r, std::unique_ptr<Stream> stream, std::string peer, Dialect d, Limits limits,
                       Callbacks cb)
    : r_(r), stream_(std::move(stream)), peer_(std::move(peer)), dialect_(d), limits_(limits), cb_(std::move(cb)) {
  stream_->on_readable([this] { on_readable(); });
  stream_->on_writable([this] { write_some(); });
  stream_->want_read(true);
  flush_hook_ = r_.before_poll([this] {
    if (pending() > 0 && !dead_) write_some();
  });
}

Connection::~Connection() {
  *alive_ = false;
  r_.remove_before_poll(flush_hook_);
}

void Connection::send(const Message& m) {
  if (dead_ || closing_) return;
  // Reserve the whole message up front: a 2 MiB frame is copied once, not regrown.
  std::size_t hint = 4096;
  if (m.data)
    for (const auto& w : m.data->data)
      for (const auto& a : w.data) hint += a.bytes.size() + 64;
  std::vector<std::uint8_t> buf;
  buf.reserve(hint);
  encode(m, dialect_, buf);
  out_total_ += buf.size();
  out_pending_ += buf.size();
  out_.push_back(std::move(buf));
  if (pending() >= kHighWater) write_some();  // else before the reactor waits
}

void Connection::send_raw(const std::vector<std::uint8_t>& bytes) {
  if (dead_ || closing_) return;
  out_.push_back(bytes);
  out_total_ += bytes.size();
  out_pending_ += bytes.size();
  if (pending() >= kHighWater) write_some();
}

void Connection::pause_reading(bool paused) {
  if (paused_ == paused) return;
  paused_ = paused;
  update_events();
  if (!paused_ && !dead_) {
    // Whole messages may already be buffered: deliver them without waiting for new bytes.
    auto alive = alive_;
    decode_buffered();
    if (!*alive) return;
  }
}

void Connection::close_after_flush(std::function<void()> done) {
  if (dead_) {
    if (done) done();
    return;
  }
  closing_ = true;
  flushed_ = std::move(done);
  if (pending() == 0 && stream_->flushed()) {
    finish_close();
    return;
  }
  update_events();
}

void Connection::finish_close() {
  dead_ = true;
  if (stream_) (void)stream_->shutdown_write();  // closing anyway: nothing to do about an error
  stream_.reset();
  if (auto f = std::move(flushed_)) f();
}

void Connection::update_events() {
  if (!stream_) return;
  stream_->want_read(!paused_ && !closing_ && !dead_);
  stream_->want_write(pending() > 0);
}

void Connection::fail(Error e) {
  if (dead_) return;
  dead_ = true;
  stream_.reset();
  if (closing_) {
    if (auto f = std::move(flushed_)) f();
    return;
  }
  if (cb_.on_closed) cb_.on_closed(e);
}

void Connection::on_readable() {
  if (closing_) {
    if (pending() == 0 && stream_->flushed()) finish_close();
    return;
  }
  if (!paused_) read_some();
}

void Connection::read_some() {
  auto alive = alive_;
  std::size_t budget = 4 * kReadSlice;  // then let other descriptors have a turn
  while (!dead_ && !paused_ && budget > 0) {
    std::size_t buffered = in_.size() - in_head_;
    std::size_t want = std::max(kReadSlice, in_needed_ > buffered ? in_needed_ - buffered : 0);
    if (in_head_ > 0 && (in_head_ >= in_.size() / 2 || in_.capacity() - in_.size() < want)) {
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_head_));
      in_head_ = 0;
    }
    std::size_t at = in_.size();
    in_.resize(at + want);
    ssize_t n = stream_->read(in_.data() + at, want);
    if (n < 0) {
      in_.resize(at);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(stream_->io_error(ErrorKind::disconnected, "read " + peer_, errno));
      return;
    }
    in_.resize(at + static_cast<std::size_t>(n));
    if (n == 0) {
      std::size_t left = in_.size() - in_head_;
      if (left == 0) {
        fail(make_error(ErrorKind::disconnected, peer_, "connection closed by peer"));
      } else {
        Error e = make_error(ErrorKind::disconnected, peer_,
                             fmt::format("connection closed in the middle of the message at byte {} ({} of {} bytes)",
                                         in_offset_, left, std::max(in_needed_, left + 1)));
        e.id = "truncated";
        fail(e);
      }
      return;
    }
    budget -= std::min(budget, static_cast<std::size_t>(n));
    if (notice_tls_ && tls_peer_noticed()) return;
    decode_buffered();
    if (!*alive) return;
  }
}

bool Connection::tls_peer_noticed() {
  if (in_offset_ > 0 || in_head_ > 0 || in_.empty()) return false;
  std::span<const std::uint8_t> first(in_.data(), in_.size());
  int as = notice_tls_;
  notice_tls_ = 0;  // only the first bytes tell
  if (as == 1 && is_tls_alert(first)) {
    fail(listener_needs_keys(peer_));
    return true;
  }
  if (as == 2 && first[0] == 0x16) {
    static const char kNoKeys[] = "no keys here: plain PyMoDAQ (see dl-security(7))\n";
    (void)stream_->write(kNoKeys, sizeof kNoKeys - 1);
    Error e = make_error(ErrorKind::auth, "from " + peer_, "a TLS handshake, but this listener has no keys (see dl-security(7))");
    e.id = "no-keys";
    fail(e);
    return true;
  }
  return false;
}

void Connection::decode_buffered() {
  auto alive = alive_;
  while (!dead_ && !paused_ && !closing_) {
    std::size_t buffered = in_.size() - in_head_;
    if (buffered == 0 || buffered < in_needed_) return;
    Decoded d = decode(std::span<const std::uint8_t>(in_.data() + in_head_, buffered), dialect_, limits_, in_offset_);
    if (d.status == DecodeStatus::need_more) {
      in_needed_ = d.needed;
      return;
    }
    if (d.status == DecodeStatus::bad) {
      fail(decode_error(d, "from " + peer_));
      return;
    }
    std::uint64_t off = in_offset_;
    in_head_ += d.consumed;
    in_offset_ += d.consumed;
    in_needed_ = 1;
    if (in_head_ == in_.size()) {
      in_.clear();
      in_head_ = 0;
    }
    if (cb_.on_message) cb_.on_message(std::move(d.message), off, d.consumed);
    if (!*alive) return;
  }
}

void Connection::write_some() {
  auto alive = alive_;
  while (!dead_ && pending() > 0) {
    iovec iov[64];
    int cnt = 0;
    for (auto it = out_.begin(); it != out_.end() && cnt < 64; ++it, ++cnt) {
      std::size_t skip = cnt == 0 ? out_head_ : 0;
      iov[cnt].iov_base = it->data() + skip;
      iov[cnt].iov_len = it->size() - skip;
    }
    ssize_t n = stream_->writev(iov, cnt);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(stream_->io_error(ErrorKind::disconnected, "write " + peer_, errno));
      return;
    }
    std::size_t done = static_cast<std::size_t>(n);
    out_pending_ -= done;
    while (done > 0) {
      std::size_t left = out_.front().size() - out_head_;
      if (done < left) {
        out_head_ += done;
        break;
      }
      done -= left;
      out_.pop_front();
      out_head_ = 0;
    }
  }
  if (dead_) return;
  if (closing_ && pending() == 0 && stream_->flushed()) {
    finish_close();
    return;
  }
  update_events();
  if (congested()) {
    was_congested_ = true;
  } else if (was_congested_ && pending() < kHighWater / 2) {
    was_congested_ = false;
    if (cb_.on_drained) cb_.on_drained();
    if (!*alive) return;
  }
}

}  // namespace dl::pymodaq
