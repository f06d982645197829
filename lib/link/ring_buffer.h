// ByteRing: a fixed-capacity FIFO of bytes whose pages are mapped twice, back to back, so any
// run of up to capacity() bytes is contiguous in memory even where it wraps. Frames can then be
// encoded, read into and written out in place, with no copy to straighten them.
//
// Offsets are absolute (they only grow); tail <= head, head - tail <= capacity. Not
// thread-safe; owned by one link. It is not a queue of messages: callers keep their own index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/base/error.h"

namespace dl {

class ByteRing {
 public:
  ByteRing() = default;
  ByteRing(ByteRing&& o) noexcept;
  ByteRing& operator=(ByteRing&& o) noexcept;
  ByteRing(const ByteRing&) = delete;
  ByteRing& operator=(const ByteRing&) = delete;
  ~ByteRing();

  // Capacity is rounded up to whole pages. Errors: io (memfd_create or mmap failed).
  static Result<ByteRing> create(std::size_t min_capacity);

  std::size_t capacity() const { return capacity_; }
  std::uint64_t head() const { return head_; }
  std::uint64_t tail() const { return tail_; }
  std::size_t size() const { return static_cast<std::size_t>(head_ - tail_); }
  std::size_t free_space() const { return capacity_ - size(); }

  // Pointer to absolute offset `at`, valid for capacity() bytes.
  std::uint8_t* at(std::uint64_t offset) const { return base_ + offset % capacity_; }
  std::span<std::uint8_t> writable() const { return {at(head_), free_space()}; }

  void produce(std::size_t n) { head_ += n; }
  void release_to(std::uint64_t offset) { tail_ = offset; }   // tail <= offset <= head
  void truncate_to(std::uint64_t offset) { head_ = offset; }  // drop bytes after offset

  // A larger ring holding the same bytes at the same absolute offsets.
  Result<ByteRing> grown(std::size_t min_capacity) const;

 private:
  std::uint8_t* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::uint64_t head_ = 0, tail_ = 0;
};

}  // namespace dl
