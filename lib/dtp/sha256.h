// sha256: the whole-payload hash DTP sends in META and checks at the end, from OpenSSL 3's
// EVP interface (which uses the CPU's SHA extensions where present). Incremental, so a client
// can hash its in-order prefix while holes are still being filled.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "lib/base/error.h"

namespace dl::dtp {

using Digest = std::array<std::uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::uint8_t> bytes);
  Digest finish();  // then reset for another use

 private:
  void* ctx_;  // EVP_MD_CTX, kept opaque so that no OpenSSL header leaks out
};

// Hashes `size` bytes of `fd` from offset 0 with pread (blocks: disk I/O). `stop`, when set
// by another thread, abandons the work (cancelled). Errors: io (short file, read failure).
Result<Digest> sha256_fd(int fd, std::uint64_t size, const std::atomic<bool>* stop = nullptr);

std::string hex(std::span<const std::uint8_t> bytes);

}  // namespace dl::dtp
