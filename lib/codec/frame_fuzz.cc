// Fuzz target for the native frame decoder, the HELLO decoder and the --framed record splitter.
// fuzz-sources: lib/codec/frame.cc lib/codec/checksum.cc lib/codec/checksum_avx2.cc lib/base/error.cc lib/base/clock.cc lib/codec/message_io.cc
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <span>

#include "lib/codec/frame.h"
#include "lib/codec/message_io.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> buf(data, size);
  std::size_t off = 0;
  while (off < size) {
    auto d = dl::frame::decode(buf.subspan(off), 1 << 16);
    if (d.status == dl::frame::Status::need_more) {
      if (d.needed <= size - off) __builtin_trap();  // claims to need what it already has
      break;
    }
    if (d.status == dl::frame::Status::bad) {
      if (*d.id == '\0') __builtin_trap();
      off += 1;  // the link drops the connection; here, keep exploring
      continue;
    }
    if (d.frame_size < dl::frame::kHeaderSize || d.frame_size > size - off) __builtin_trap();
    if (d.header.type == dl::frame::Type::hello) {
      (void)dl::frame::decode_hello(buf.subspan(off + dl::frame::kHeaderSize, d.header.length));
    }
    if (d.header.type == dl::frame::Type::error) {
      (void)dl::frame::decode_error_payload(buf.subspan(off + dl::frame::kHeaderSize, d.header.length), "fuzz");
    }
    off += d.frame_size;
  }
  // The same bytes as --framed input, fed in odd-sized pieces.
  dl::Splitter s(dl::MessageMode::framed, 1 << 12);
  std::size_t pos = 0;
  while (pos < size && !s.error()) {
    auto sp = s.space();
    if (sp.empty()) {
      std::span<const std::uint8_t> p;
      double ts;
      if (!s.peek(p, ts)) __builtin_trap();  // full buffer must hold a message
      s.pop();
      continue;
    }
    std::size_t n = std::min<std::size_t>({sp.size(), size - pos, 1 + (pos % 97)});
    std::memcpy(sp.data(), data + pos, n);
    s.filled(n);
    pos += n;
    std::span<const std::uint8_t> p;
    double ts;
    while (s.peek(p, ts)) {
      if (p.size() > (1u << 12)) __builtin_trap();
      s.pop();
    }
  }
  return 0;
}
