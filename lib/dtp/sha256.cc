#include "lib/dtp/sha256.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace dl::dtp {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(std::span<const std::uint8_t> bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

Digest Sha256::finish() {
  Digest d{};
  unsigned n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), d.data(), &n);
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
  return d;
}

Result<Digest> sha256_fd(int fd, std::uint64_t size, const std::atomic<bool>* stop) {
  Sha256 h;
  std::vector<std::uint8_t> buf(1 << 20);
  std::uint64_t at = 0;
  while (at < size) {
    if (stop && stop->load(std::memory_order_relaxed)) return make_error(ErrorKind::cancelled, "hash");
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(ErrorKind::io, "read", errno);
    if (n == 0) return make_error(ErrorKind::io, "read", "file shrank while being hashed");
    h.update({buf.data(), static_cast<std::size_t>(n)});
    at += static_cast<std::uint64_t>(n);
  }
  return h.finish();
}

std::string hex(std::span<const std::uint8_t> bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    s.push_back(d[b >> 4]);
    s.push_back(d[b & 15]);
  }
  return s;
}

}  // namespace dl::dtp
