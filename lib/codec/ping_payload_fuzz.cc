// Fuzz target for dlping's payload decoder: anything decodes or is refused with a reason, and
// what decodes re-encodes to the same 64 bytes.
// fuzz-sources: lib/codec/ping_payload.cc lib/base/error.cc
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "lib/codec/ping_payload.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = dl::ping::decode_stamps(std::span<const std::uint8_t>(data, size));
  if (!s) {
    if (s.error().id.empty()) __builtin_trap();
    return 0;
  }
  if (size < dl::ping::kPayloadHeader) __builtin_trap();
  std::uint8_t out[dl::ping::kPayloadHeader];
  dl::ping::encode_stamps(out, *s);
  if (std::memcmp(out, data, sizeof out) != 0) __builtin_trap();
  return 0;
}
