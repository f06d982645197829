// json: one JSON line per decoded PyMoDAQ message, for `server` and `decode` output.
// Arrays are summarised (dtype, shape, min, max, mean) or given in full (values in C order);
// strings that are not valid UTF-8 have their stray bytes escaped as \u00XX.
// It is not: a JSON parser, or a stable schema for anything but these two roles' output
// (documented in pymodaq-emu(1)).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lib/codec/pymodaq_types.h"

namespace dl::pymodaq {

struct JsonOptions {
  bool full = false;                     // every array element, not just a summary
  std::optional<std::uint64_t> offset;   // the message's stream offset (decode)
  std::optional<std::size_t> size;       // its size in bytes
};

std::string message_json(const Message& m, const Dialect& d, const JsonOptions& o = {});
void append_json_string(std::string& out, std::string_view s);

}  // namespace dl::pymodaq
