// fastsocket: the fastSocket latency protocol's JSON-lines frames, byte for byte as the seed's
// Python emits them (json.dumps defaults: ", " and ": " separators, ASCII only), and a strict,
// bounded reader for what a fastSocket peer may send. Pure: no I/O, no clocks.
// Facts: /work/shared/notes/fastsocket.md; users' description: man/dlping.1, FASTSOCKET.
//   message     {"id": "<uuid4>", "type": "message", "payload": <any JSON value>}
//   server ack  {"id": "<same id>", "type": "ack"}
//   client ack  {"id": "<same id>", "type": "ack", "send_and_ack_time_ns": <integer T1>}
// Each frame is one line ending in "\n"; a line (newline included) longer than kMaxLine is an
// error, as it is for fastSocket's reader. What this is not: the exchange's timing (dlping.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lib/base/error.h"

namespace dl::fastsocket {

inline constexpr std::size_t kMaxLine = 64 * 1024;

enum class Type { message, ack };

struct Frame {
  Type type = Type::message;
  // The id exactly as Python's json.dumps would write it back, quotes included ("\"ab\""), so
  // a reply echoes any id a peer chose (escapes, non-ASCII, lone surrogates) byte-exact.
  std::string id_json;
  bool has_time = false;            // a client ack
  std::int64_t send_and_ack_time_ns = 0;
  std::string_view payload;         // message: the payload value's text, within the line
};

// Decodes one line (without its "\n"). Keys may come in any order; unknown keys are skipped;
// a repeated key's last value wins (Python's dict). Errors (protocol, final for the
// connection): "line-too-long", "bad-json", "too-deep", "bad-utf8", "not-object",
// "missing-id", "bad-id" (not a string), "bad-type", "bad-time".
Result<Frame> decode_line(std::string_view line);

// Encoders append one whole line, "\n" included, to `out`. `id_json` is a JSON string literal
// (from json_string() or a decoded Frame); `payload_json` is any JSON text.
void append_message(std::string& out, std::string_view id_json, std::string_view payload_json);
void append_server_ack(std::string& out, std::string_view id_json);
void append_client_ack(std::string& out, std::string_view id_json, std::int64_t t1_ns);

// Python's json.dumps(s) for a UTF-8 string with ensure_ascii: quotes, \" \\ \n \r \t \b \f,
// every other character outside ' '..'~' as \uxxxx (lowercase hex, surrogate pairs above
// U+FFFF). Invalid UTF-8 bytes are written as U+FFFD.
std::string json_string(std::string_view utf8);

// A random (version 4) UUID in its 36-character text form, from 16 random bytes.
std::string uuid4_text(std::span<const std::uint8_t, 16> random);

}  // namespace dl::fastsocket
