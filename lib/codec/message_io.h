// message_io: how a byte stream on stdin/stdout maps onto messages, for every tool alike.
//
//   raw     the stream is cut into chunks as it arrives; boundaries carry no meaning
//   lines   one message per line, without its '\n'; the receiver writes each followed by '\n'
//   null    the same with '\0' (for `find -print0` and friends)
//   framed  records that keep boundaries and timestamps, so `dlrecv --framed | dlsend --framed`
//           relays losslessly: 16-byte header "DLRF" | u32 BE length | f64 BE timestamp, then
//           the payload (man/dl-protocol.7, section RECORDS)
//
// Splitter turns input bytes into messages (bounded buffer, no I/O of its own); record headers
// and delimiters for output come from output_suffix()/encode_record_header().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "lib/base/clock.h"
#include "lib/base/error.h"

namespace dl {

enum class MessageMode { raw, lines, null, framed };

inline constexpr std::size_t kRecordHeaderSize = 16;
inline constexpr char kRecordMagic[4] = {'D', 'L', 'R', 'F'};
void encode_record_header(std::uint8_t* out, std::uint32_t length, double timestamp);

class Splitter {
 public:
  // Messages longer than max_message are refused (too_large); the buffer never grows beyond
  // max_message plus a record header.
  Splitter(MessageMode mode, std::uint32_t max_message);

  // Where the next read should go (never empty unless a message is waiting to be popped).
  std::span<std::uint8_t> space();
  void filled(std::size_t n);
  // Marks end of input: a last unterminated line becomes a message; a cut record is an error.
  void end_of_input() { eof_ = true; }

  // The next complete message, without removing it. false: none yet (or an error, see error()).
  bool peek(std::span<const std::uint8_t>& payload, double& timestamp);
  void pop();
  const Error* error() const { return error_ ? &*error_ : nullptr; }
  // True when everything read has been popped.
  bool drained() const { return begin_ == end_; }

 private:
  bool scan();
  MessageMode mode_;
  std::uint32_t max_message_;
  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t cap_ = 0, begin_ = 0, end_ = 0, scanned_ = 0;
  std::size_t msg_off_ = 0, msg_len_ = 0, msg_total_ = 0;
  double msg_ts_ = 0;
  bool have_msg_ = false, eof_ = false;
  std::uint64_t consumed_total_ = 0;
  std::optional<Error> error_;
};

}  // namespace dl
