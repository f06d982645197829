#include "lib/link/ring_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace dl {

ByteRing::ByteRing(ByteRing&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      capacity_(std::exchange(o.capacity_, 0)),
      head_(o.head_),
      tail_(o.tail_) {}

ByteRing& ByteRing::operator=(ByteRing&& o) noexcept {
  if (this != &o) {
    this->~ByteRing();
    new (this) ByteRing(std::move(o));
  }
  return *this;
}

ByteRing::~ByteRing() {
  if (base_) ::munmap(base_, capacity_ * 2);
}

Result<ByteRing> ByteRing::create(std::size_t min_capacity) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::size_t cap = (std::max<std::size_t>(min_capacity, 1) + page - 1) / page * page;
  int fd = ::memfd_create("dl-ring", MFD_CLOEXEC);
  if (fd < 0) return errno_error(ErrorKind::io, "memfd_create", errno);
  if (::ftruncate(fd, static_cast<off_t>(cap)) != 0) {
    int err = errno;
    ::close(fd);
    return errno_error(ErrorKind::io, "ring buffer of " + std::to_string(cap) + " bytes", err);
  }
  // Reserve 2*cap of address space, then map the same file over both halves.
  void* area = ::mmap(nullptr, cap * 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    return errno_error(ErrorKind::io, "mmap ring buffer", err);
  }
  auto* base = static_cast<std::uint8_t*>(area);
  void* a = ::mmap(base, cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  void* b = ::mmap(base + cap, cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  int err = errno;
  ::close(fd);
  if (a == MAP_FAILED || b == MAP_FAILED) {
    ::munmap(area, cap * 2);
    return errno_error(ErrorKind::io, "mmap ring buffer", err);
  }
  ByteRing r;
  r.base_ = base;
  r.capacity_ = cap;
  return r;
}

Result<ByteRing> ByteRing::grown(std::size_t min_capacity) const {
  auto r = create(std::max(min_capacity, capacity_));
  if (!r) return r;
  r->head_ = head_;
  r->tail_ = tail_;
  if (size() > 0) std::memcpy(r->at(tail_), at(tail_), size());
  return r;
}

}  // namespace dl
