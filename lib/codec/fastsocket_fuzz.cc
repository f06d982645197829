// Fuzz target for the fastSocket line reader: every input line must decode or be refused with
// a named reason, and what decodes must re-encode to a line that decodes to the same frame.
// fuzz-sources: lib/codec/fastsocket.cc lib/base/error.cc
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/codec/fastsocket.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  while (!all.empty()) {
    auto nl = all.find('\n');
    std::string_view line = all.substr(0, nl);
    all = nl == std::string_view::npos ? std::string_view{} : all.substr(nl + 1);
    auto f = dl::fastsocket::decode_line(line);
    if (!f) {
      if (f.error().id.empty()) __builtin_trap();
      continue;
    }
    std::string out;
    if (f->type == dl::fastsocket::Type::message) {
      dl::fastsocket::append_message(out, f->id_json, f->payload.empty() ? "null" : f->payload);
    } else if (f->has_time) {
      dl::fastsocket::append_client_ack(out, f->id_json, f->send_and_ack_time_ns);
    } else {
      dl::fastsocket::append_server_ack(out, f->id_json);
    }
    if (out.back() != '\n') __builtin_trap();
    out.pop_back();
    auto g = dl::fastsocket::decode_line(out);
    if (out.size() + 1 <= dl::fastsocket::kMaxLine) {
      if (!g || g->id_json != f->id_json || g->type != f->type || g->has_time != f->has_time ||
          g->send_and_ack_time_ns != f->send_and_ack_time_ns)
        __builtin_trap();
    }
  }
  return 0;
}
