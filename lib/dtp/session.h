// session: dtpget's resume state, the file behind --session and --resume (format in
// man/dtp-session.5): which server and payload, the payload's identity (size and SHA-256,
// so a changed payload is never mixed with old bytes), the chunk size, the output path, the
// byte ranges wanted and those already written. Versioned and checksummed; written whole and
// atomically (atomic_file.h), so a crash leaves the previous state, never a torn one.
// What it is not: it does not hold payload bytes (those are in the output file).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lib/base/error.h"
#include "lib/codec/range_set.h"
#include "lib/dtp/sha256.h"

namespace dl::dtp {

inline constexpr std::uint16_t kSessionVersion = 1;

struct SessionState {
  std::string server;  // as given on the command line: "127.0.0.1:9000"
  std::string name;    // payload name
  std::string output;  // absolute path of the output file
  std::uint64_t size = 0;
  Digest sha256{};
  std::uint32_t chunk = 0;
  RangeSet wanted;     // what this transfer fetches (the whole payload unless --range)
  RangeSet received;   // what is already in the output file
};

// Pure encoding and decoding. decode() validates everything (magic, version, checksum, string
// lengths, ranges sorted, disjoint and within the size); errors: protocol with a detail.
std::vector<std::uint8_t> encode_session(const SessionState& s);
Result<SessionState> decode_session(std::span<const std::uint8_t> bytes);

// File I/O (blocks). save: atomically replaces `path`; `durable` also fsyncs. load: errors io
// (cannot read), protocol (corrupt or not a session file; the message says which).
Status save_session(const std::string& path, const SessionState& s, bool durable);
Result<SessionState> load_session(const std::string& path);

}  // namespace dl::dtp
