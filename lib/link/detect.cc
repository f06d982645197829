#include "lib/link/detect.h"

#include "lib/codec/classic_codec.h"

namespace dl {

std::size_t newcomer_read_limit(std::span<const std::uint8_t> early) {
  if (early.empty()) return 1;
  std::size_t whole = early[0] == frame::kMarker ? frame::kHeaderSize + frame::kHelloSize : classic::kHeaderSize;
  return early.size() < whole ? whole - early.size() : 1;
}

Detection detect_newcomer(std::span<const std::uint8_t> early, Proto proto, std::uint32_t max_message,
                          const std::string& ctx) {
  Detection d;
  if (early.empty()) return d;
  auto refuse = [&](Error e, bool tell) {
    d.kind = Detection::refuse;
    d.why = std::move(e);
    d.tell = tell;
    return d;
  };
  std::uint8_t first = early[0];
  if (first == classic::kStartByte && proto != Proto::native) {
    // A stranger trickling spaces, or sending garbage after them, never gets this far.
    if (early.size() < classic::kHeaderSize) return d;
    auto c = classic::decode(early.first(classic::kHeaderSize), max_message);
    if (c.status == classic::DecodeStatus::garbage || c.status == classic::DecodeStatus::too_large) {
      return refuse(protocol_error(std::string("classic-") + c.reason, ctx, "not a classic frame header"), false);
    }
    d.kind = Detection::classic;
    return d;
  }
  if (first != frame::kMarker || proto == Proto::classic) {
    return refuse(protocol_error("bad-marker", ctx,
                                 proto == Proto::classic
                                     ? "not a classic frame (this side speaks --proto classic)"
                                     : "neither a native handshake (0xD7) nor a classic frame (0x20)"),
                  first == frame::kMarker);
  }
  auto f = frame::decode(early, max_message);
  if (f.status == frame::Status::bad) return refuse(frame::decode_error(f, max_message, ctx), true);
  if (f.status == frame::Status::need_more) {
    if (f.needed > frame::kHeaderSize + frame::kHelloSize) {
      return refuse(protocol_error("bad-hello", ctx, "first frame is not a handshake"), true);
    }
    return d;
  }
  if (f.header.type != frame::Type::hello) {
    return refuse(protocol_error("bad-hello", ctx, "first frame is not a handshake"), true);
  }
  auto hello = frame::decode_hello(early.subspan(frame::kHeaderSize, f.header.length));
  if (!hello) {
    Error e = hello.error();
    e.context = ctx;
    return refuse(e, true);
  }
  d.kind = Detection::native;
  d.hello = *hello;
  return d;
}

}  // namespace dl
