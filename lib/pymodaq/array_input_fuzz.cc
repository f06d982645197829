// Fuzzes the --data framing parser (text header and .npy): any bytes give arrays, "need more"
// or a named error; never a crash, an overread or an array larger than the limit.
// fuzz-sources: lib/pymodaq/array_input.cc lib/pymodaq/synth.cc lib/codec/pymodaq_types.cc lib/base/error.cc
#include <cstddef>
#include <cstdint>
#include <span>

#include "lib/pymodaq/array_input.h"

using namespace dl::pymodaq;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> buf(data, size);
  std::uint64_t offset = 0;
  const std::uint64_t limit = 1 << 16;
  while (!buf.empty()) {
    ArrayParse p = parse_array(buf, offset, limit);
    if (p.status != ArrayParse::Status::array) break;
    if (p.consumed == 0 || p.consumed > buf.size() || p.array.bytes.size() > limit) __builtin_trap();
    buf = buf.subspan(p.consumed);
    offset += p.consumed;
  }
  return 0;
}
