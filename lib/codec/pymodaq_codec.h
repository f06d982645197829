// pymodaq_codec: PyMoDAQ's TCP/IP wire format in its four generations (v1, v2, v4 with the
// 4.1.0/4.1.3/4.2/4.4 layouts, v5), pure: bytes in, messages out, and back. The byte-by-byte
// description is /work/shared/notes/pymodaq.md; golden files encoded by PyMoDAQ itself are
// in testdata/pymodaq/ and the unit tests reproduce them exactly.
//
// One decoder shape, like the family's other codecs: decode() looks at the front of a buffer
// that starts at a message boundary and says "here is one whole message (N bytes)", "need at
// least N bytes", or "bad input" naming the field and its byte offset in the stream. Every
// length read from the wire is checked against Limits before anyone waits for or allocates it.
// The protocol has no message boundaries of its own before v5: a message is a command string
// plus the payload that command implies (payload_of()), so both directions decode with one table.
//
// It is not: I/O, the conversation (who sends what when: lib/pymodaq), or JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"
#include "lib/codec/pymodaq_types.h"

namespace dl::pymodaq {

struct Limits {
  std::uint64_t max_message = 256ull << 20;  // a whole message (v5: each frame) in bytes
  std::uint32_t max_items = 1u << 20;        // elements of one list
  std::uint32_t max_ndim = 64;               // numpy's own limit
  std::uint32_t max_command = 1024;          // a command string (PyMoDAQ's are < 20 bytes)
};

enum class DecodeStatus { message, need_more, bad };

struct Decoded {
  DecodeStatus status = DecodeStatus::need_more;
  Message message;            // message
  std::size_t consumed = 0;   // message: its size in bytes
  std::size_t needed = 0;     // need_more: bytes the buffer must hold before decode() can progress
  // bad:
  bool too_large = false;     // a length beyond Limits (exit "too large") rather than malformed
  std::string id;             // "bad-length", "bad-dtype", "bad-tag", "bad-shape", "too-large", ...
  std::string field;          // what was being read: "array nbytes", "list count", "dtype"...
  std::uint64_t offset = 0;   // stream offset of that field
  std::string detail;
};

// Decodes the message at the front of `buf`; `stream_offset` is buf[0]'s offset in the stream
// (for error positions). Pure; never reads past buf, never throws.
Decoded decode(std::span<const std::uint8_t> buf, const Dialect& d, const Limits& limits = {},
               std::uint64_t stream_offset = 0);

// "protocol error [bad-dtype]: dtype at byte 23: ..." (kind protocol or too_large).
Error decode_error(const Decoded& d, std::string_view context);

// Appends the whole message (command + payload) to out. Never fails for messages built with
// the helpers in pymodaq_types.h; fields the dialect cannot carry are left out (v1 cannot carry
// arrays of more than two dimensions: the caller checks with can_carry()).
void encode(const Message& m, const Dialect& d, std::vector<std::uint8_t>& out);
// Empty when `m` fits the dialect, else why not.
std::string can_carry(const Message& m, const Dialect& d);

// The parts, as the golden files hold them (v5: each one framed).
void encode_string(std::string_view s, const Dialect& d, std::vector<std::uint8_t>& out);
void encode_data(const Dte& dte, const Dialect& d, std::vector<std::uint8_t>& out);
void encode_position(const Dwa& pos, const Dialect& d, std::vector<std::uint8_t>& out);
void encode_path(const std::vector<std::string>& path, const Dialect& d, std::vector<std::uint8_t>& out);
void encode_xml(std::string_view xml, bool as_bytes, const Dialect& d, std::vector<std::uint8_t>& out);

}  // namespace dl::pymodaq
