// libFuzzer target for the classic frame codec. Build and run (not part of the Bazel build):
// fuzz-sources: lib/codec/classic_codec.cc
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib \
//       lib/classic_codec_fuzz.cc lib/classic_codec.cc -o /tmp/cf
//   /tmp/cf -runs=200000 <scratch copy of testdata/fuzz/classic_codec>
// Invariants are checked with __builtin_trap() rather than assert() so they hold under NDEBUG too.
#include "classic_codec.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace {

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr std::uint64_t kMaxPayload = 1 << 20;

using dl::classic::Decoded;
using dl::classic::DecodeStatus;

void check_frame(std::span<const std::uint8_t> rest, const Decoded& d) {
  FUZZ_CHECK(d.consumed <= rest.size());
  FUZZ_CHECK(d.payload_offset == dl::classic::kHeaderSize);
  FUZZ_CHECK(d.payload_size <= kMaxPayload);
  FUZZ_CHECK(d.consumed == dl::classic::kOverhead + d.payload_size);
  FUZZ_CHECK(d.payload_offset + d.payload_size <= d.consumed);

  // Decoding is lossless: re-encoding gives back the exact bytes, including NaN payload bits.
  std::vector<std::uint8_t> again;
  dl::classic::append_frame(again, rest.subspan(d.payload_offset, d.payload_size), d.timestamp);
  FUZZ_CHECK(again.size() == d.consumed);
  FUZZ_CHECK(std::memcmp(again.data(), rest.data(), d.consumed) == 0);

  // A receiver holding only part of this frame must be told to wait, never to skip: otherwise a
  // frame split across reads would be lost depending on timing.
  const std::size_t cut = d.consumed / 2;
  const Decoded partial = dl::classic::decode(rest.first(cut), kMaxPayload);
  FUZZ_CHECK(partial.status == DecodeStatus::need_more);
  FUZZ_CHECK(partial.needed > cut && partial.needed <= d.consumed);
  const Decoded almost = dl::classic::decode(rest.first(d.consumed - 1), kMaxPayload);
  FUZZ_CHECK(almost.status == DecodeStatus::need_more);
  FUZZ_CHECK(almost.needed == d.consumed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  std::size_t at = 0;
  while (true) {
    const auto rest = input.subspan(at);
    const Decoded d = dl::classic::decode(rest, kMaxPayload);
    FUZZ_CHECK(d.reason != nullptr);
    switch (d.status) {
      case DecodeStatus::need_more:
        FUZZ_CHECK(d.consumed == 0);
        FUZZ_CHECK(d.needed > rest.size());
        FUZZ_CHECK(d.needed >= dl::classic::kHeaderSize);
        FUZZ_CHECK(d.needed <= dl::classic::kOverhead + kMaxPayload);
        return 0;
      case DecodeStatus::frame:
        check_frame(rest, d);
        break;
      case DecodeStatus::garbage:
        FUZZ_CHECK(d.consumed >= 1 && d.consumed <= rest.size());
        FUZZ_CHECK(d.reason[0] != '\0');
        break;
      case DecodeStatus::too_large:
        FUZZ_CHECK(d.consumed >= 1 && d.consumed <= rest.size());
        FUZZ_CHECK(d.payload_size > kMaxPayload);
        break;
      default:
        __builtin_trap();
    }
    at += d.consumed;
  }
}
