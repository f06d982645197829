// array_input: arrays a user pipes into the grabber (`--data -`), one per data reply.
// Two framings, recognised per array by its first byte, so they may even be mixed:
//
//   text header  "ARRAY <dtype> <shape>\n" then exactly prod(shape) * itemsize raw bytes,
//                e.g. "ARRAY <f8 512x512\n" + 2 MiB; dtype is any numpy dtype string, shape
//                dimensions joined by 'x' (or ','); the line is at most 256 bytes.
//   .npy         numpy's own file format (versions 1-3), so `np.save(sys.stdout.buffer, a)`
//                repeated in a loop is a valid stream; C order only.
//
// Pure and incremental: next() looks at the front of a buffer and says "an array of N bytes",
// "need more", or "bad" with the byte offset. It is not: reading stdin (the grabber does that).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "lib/base/error.h"
#include "lib/codec/pymodaq_types.h"

namespace dl::pymodaq {

struct ArrayParse {
  enum class Status { array, need_more, bad } status = Status::need_more;
  Array array;
  std::size_t consumed = 0;  // array: bytes taken
  std::size_t needed = 0;    // need_more: bytes the buffer must hold
  Error error;               // bad: protocol (or too_large) with the offset in its detail
};

// `offset` is buf[0]'s position in the input (for messages); `max_bytes` bounds one array.
ArrayParse parse_array(std::span<const std::uint8_t> buf, std::uint64_t offset, std::uint64_t max_bytes);

}  // namespace dl::pymodaq
