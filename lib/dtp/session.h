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

// The most separate received ranges dtpget keeps: 16 MiB for the map behind
// SessionState::received (a few times that while holes are computed from it), 4 MiB in the
// session file. Beyond it, data that would start another range is dropped and asked for again
// later, so a payload with more holes than this still arrives, in more passes (a pass asks for
// at most ~90k holes anyway).
inline constexpr std::size_t kMaxReceivedRanges = 1 << 18;

// How many separate received ranges a transfer can come to when the server sends what dtp(7)
// says (whole chunks, a shorter one only at the end of a range asked for): one per chunk of the
// payload at most, plus one per wanted range, those a resumed session brought, and room for
// ranges asked for cut short (mid-pass repairs). More means the server fragments the payload.
// Pure arithmetic; saturates instead of overflowing.
std::uint64_t fragment_limit(std::uint64_t size, std::uint32_t chunk, std::size_t wanted_ranges,
                             std::size_t resumed_ranges);

// Pure encoding and decoding. decode() validates everything (magic, version, checksum, string
// lengths, ranges sorted, disjoint and within the size); errors: protocol with a detail.
std::vector<std::uint8_t> encode_session(const SessionState& s);
Result<SessionState> decode_session(std::span<const std::uint8_t> bytes);

// File I/O (blocks). save: atomically replaces `path`; `durable` also fsyncs. load: errors io
// (cannot read), protocol (corrupt or not a session file; the message says which).
Status save_session(const std::string& path, const SessionState& s, bool durable);
Result<SessionState> load_session(const std::string& path);

}  // namespace dl::dtp
