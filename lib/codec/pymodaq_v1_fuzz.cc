// Fuzzes the PyMoDAQ v1 decoder: any bytes must decode to messages, "need more" or a named
// error, never crash or read out of bounds; every decoded message must re-encode and decode
// to the same command. The first byte picks a layout where the generation has several.
// fuzz-sources: lib/codec/pymodaq_codec.cc lib/codec/pymodaq_types.cc lib/base/error.cc
#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/codec/pymodaq_codec.h"

using namespace dl::pymodaq;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const char* kLayouts[] = {"4.1.0", "4.1.3", "4.2", "4.4", "3.6.2", "3.6.3"};
  Dialect d = *parse_dialect("v1");
  if (d.gen == Generation::v4) d = *parse_dialect(kLayouts[data[0] % 4]);
  if (d.gen == Generation::v2) d = *parse_dialect(kLayouts[4 + data[0] % 2]);
  Limits lim;
  lim.max_message = 1 << 16;
  lim.max_items = 1024;
  std::span<const std::uint8_t> buf(data + 1, size - 1);
  std::uint64_t offset = 0;
  while (!buf.empty()) {
    Decoded r = decode(buf, d, lim, offset);
    if (r.status != DecodeStatus::message) break;
    if (r.consumed == 0 || r.consumed > buf.size()) __builtin_trap();
    std::vector<std::uint8_t> again;
    encode(r.message, d, again);
    Decoded back = decode(std::span<const std::uint8_t>(again), d, Limits{});
    if (back.status != DecodeStatus::message || back.message.command != r.message.command) __builtin_trap();
    buf = buf.subspan(r.consumed);
    offset += r.consumed;
  }
  return 0;
}
