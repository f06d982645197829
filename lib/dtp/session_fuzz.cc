// Fuzz target for the session file decoder: whatever the bytes, decode never crashes, and
// what it accepts re-encodes to the same bytes.
// fuzz-sources: lib/dtp/session.cc lib/codec/range_set.cc lib/base/error.cc lib/base/atomic_file.cc lib/base/fd.cc
#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/dtp/session.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = dl::dtp::decode_session(std::span<const std::uint8_t>(data, size));
  if (!s) return 0;
  auto again = dl::dtp::encode_session(*s);
  if (again.size() != size) __builtin_trap();
  for (std::size_t i = 0; i < size; ++i) {
    if (again[i] != data[i]) __builtin_trap();
  }
  return 0;
}
