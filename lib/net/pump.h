// Pump: moves bytes from one Stream to another until the source ends, with a bounded buffer
// and backpressure (it stops reading while the destination cannot take more), and passes the
// half-close on: the source's end of stream becomes shutdown_write() on the destination once
// every byte is written. Two Pumps make a full-duplex relay. When both ends are plain
// descriptors it moves bytes with splice(2) through a pipe of its own, so payload never
// crosses into user space; anything splice refuses (a terminal, an inherited blocking
// descriptor) falls back to read/write through the buffer, transparently.
//
// A reader that went away is a write error (EPIPE), never a SIGPIPE death, whether or not
// the process ignores SIGPIPE. Not a framer and not a rate limiter: bytes in, bytes out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/stream.h"

namespace dl {

struct PumpOptions {
  std::size_t buffer = 256 * 1024;  // bytes held between source and destination, at most
  bool splice = true;               // allow splice(2) when both ends can take it
  bool shutdown_on_eof = true;      // half-close the destination when the source ends
};

class Pump {
 public:
  // Called once: ok when the source ended and every byte reached the destination (and the
  // destination was half-closed); otherwise the error (ErrorKind::io, context "read" or
  // "write" with errno). May destroy the Pump and the Streams.
  using Done = std::function<void(Status)>;

  // Takes over from.on_readable and to.on_writable; both Streams must outlive the Pump.
  Pump(Stream& from, Stream& to, PumpOptions options, Done done);
  ~Pump();
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  void start();
  // Stops moving bytes (no callback); bytes held in the buffer are dropped.
  void stop();
  std::uint64_t bytes() const { return bytes_; }
  bool splicing() const { return splicing_; }
  bool done() const { return finished_; }

 private:
  void on_readable();
  void on_writable();
  bool read_some();   // false once finished
  bool write_some();  // false once finished
  void fall_back_to_copy();
  void alloc_buffer(std::size_t n);
  void update();
  void finish(Status st);
  std::size_t held() const { return splicing_ ? in_pipe_ : len_ - off_; }
  std::size_t room() const { return splicing_ ? pipe_size_ - in_pipe_ : cap_ - len_; }

  Stream& from_;
  Stream& to_;
  PumpOptions opt_;
  Done done_;
  bool splicing_ = false, eof_ = false, finished_ = false, started_ = false, guard_sigpipe_ = false;
  bool pipe_full_ = false;  // the pipe's slots are taken (small segments): read after a write
  Fd pipe_r_, pipe_w_;
  std::size_t pipe_size_ = 0, in_pipe_ = 0;
  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t cap_ = 0;
  std::size_t off_ = 0, len_ = 0;
  std::uint64_t bytes_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl
