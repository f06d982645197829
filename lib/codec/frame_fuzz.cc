// Fuzz target for the native frame decoder, the HELLO/ACK/ERROR payload decoders and the
// --framed record splitter. Random bytes almost never carry a valid checksum, so the input is
// also wrapped, as a payload, in frames whose checksum the harness computes: that reaches the
// HELLO, ACK and ERROR decoders past the checksum, as a peer's (or attacker's) bytes would.
// fuzz-sources: lib/codec/frame.cc lib/codec/checksum.cc lib/codec/checksum_avx2.cc lib/base/error.cc lib/base/clock.cc lib/codec/message_io.cc
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

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
  // Past the checksum: the input as the payload of a HELLO, an ACK and an ERROR frame (with
  // either flag value), each encoded with its real checksum and decoded again.
  {
    std::vector<std::uint8_t> f(dl::frame::kHeaderSize + size);
    if (size) std::memcpy(f.data() + dl::frame::kHeaderSize, data, size);
    const dl::frame::Type types[] = {dl::frame::Type::hello, dl::frame::Type::ack, dl::frame::Type::error};
    for (auto type : types) {
      std::uint16_t flags = type == dl::frame::Type::error && size && (data[0] & 1) ? dl::frame::kFlagRetryable : 0;
      dl::frame::encode(f.data(), type, size, 1.0, {f.data() + dl::frame::kHeaderSize, size}, flags);
      auto d = dl::frame::decode(f, 1 << 16);
      if (size <= (1u << 16) && d.status != dl::frame::Status::frame) __builtin_trap();
      if (d.status != dl::frame::Status::frame) break;
      std::span<const std::uint8_t> p(f.data() + dl::frame::kHeaderSize, d.header.length);
      if (type == dl::frame::Type::hello) {
        auto h = dl::frame::decode_hello(p);
        if (h) {
          if (h->delivered >= h->recv_next || h->recv_next == 0 || h->window < dl::frame::kHeaderSize) __builtin_trap();
          std::uint8_t again[dl::frame::kHelloSize];
          dl::frame::encode_hello(again, *h);
          if (std::memcmp(again, p.data(), dl::frame::kHelloSize) != 0) __builtin_trap();  // lossless
        } else if (h.error().id.empty()) {
          __builtin_trap();
        }
      } else if (type == dl::frame::Type::ack) {
        (void)dl::frame::decode_ack(p);
      } else {
        auto e = dl::frame::decode_error_payload(p, "fuzz", flags != 0);
        if (e.message().find('\n') != std::string::npos) __builtin_trap();  // one line, always
      }
    }
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
