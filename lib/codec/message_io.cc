#include "lib/codec/message_io.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "lib/base/byte_order.h"
#include "lib/base/clock.h"
#include "lib/codec/frame.h"

namespace dl {

void encode_record_header(std::uint8_t* out, std::uint32_t length, double timestamp) {
  std::memcpy(out, kRecordMagic, 4);
  put_u32(out + 4, length);
  put_f64(out + 8, timestamp);
}

Splitter::Splitter(MessageMode mode, std::uint32_t max_message)
    : mode_(mode), max_message_(max_message) {
  cap_ = std::min<std::size_t>(std::size_t{1} << 20, max_message + kRecordHeaderSize + 1);
  buf_.reset(new std::uint8_t[cap_]);
}

std::span<std::uint8_t> Splitter::space() {
  if (end_ == cap_ && begin_ > 0) {
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    scanned_ -= begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == cap_) {
    // A message longer than the buffer is still arriving: grow, up to the limit.
    std::size_t limit = std::size_t{max_message_} + kRecordHeaderSize + 1;
    if (cap_ < limit) {
      std::size_t ncap = std::min(limit, cap_ * 2);
      std::unique_ptr<std::uint8_t[]> n(new std::uint8_t[ncap]);
      std::memcpy(n.get(), buf_.get() + begin_, end_ - begin_);
      scanned_ -= begin_;
      end_ -= begin_;
      begin_ = 0;
      buf_ = std::move(n);
      cap_ = ncap;
    }
  }
  return {buf_.get() + end_, cap_ - end_};
}

void Splitter::filled(std::size_t n) { end_ += n; }

bool Splitter::scan() {
  if (have_msg_) return true;
  if (error_) return false;
  const std::uint8_t* p = buf_.get();
  if (mode_ == MessageMode::framed) {
    std::size_t avail = end_ - begin_;
    if (avail == 0) return false;
    if (avail < kRecordHeaderSize) {
      if (std::memcmp(p + begin_, kRecordMagic, std::min<std::size_t>(avail, 4)) != 0) {
        error_ = protocol_error("bad-record", "input", "framed record does not start with \"DLRF\" at byte " +
                                                           std::to_string(consumed_total_));
      } else if (eof_) {
        error_ = protocol_error("cut-record", "input", "input ends inside a record header");
      }
      return false;
    }
    if (std::memcmp(p + begin_, kRecordMagic, 4) != 0) {
      error_ = protocol_error("bad-record", "input", "framed record does not start with \"DLRF\" at byte " +
                                                         std::to_string(consumed_total_));
      return false;
    }
    std::uint32_t len = get_u32(p + begin_ + 4);
    if (len > max_message_) {
      error_ = make_error(ErrorKind::too_large, "input",
                          "record of " + std::to_string(len) + " bytes exceeds the limit of " +
                              std::to_string(max_message_) + " bytes (--max-message)");
      return false;
    }
    if (avail < kRecordHeaderSize + len) {
      if (eof_) error_ = protocol_error("cut-record", "input", "input ends inside a record");
      return false;
    }
    msg_off_ = begin_ + kRecordHeaderSize;
    msg_len_ = len;
    msg_total_ = kRecordHeaderSize + len;
    msg_ts_ = get_f64(p + begin_ + 8);
    have_msg_ = true;
    return true;
  }
  std::uint8_t delim = mode_ == MessageMode::lines ? '\n' : '\0';
  const std::uint8_t* hit = static_cast<const std::uint8_t*>(
      std::memchr(p + scanned_, delim, end_ - scanned_));
  std::size_t len;
  std::size_t total;
  if (hit) {
    len = static_cast<std::size_t>(hit - p) - begin_;
    total = len + 1;
  } else {
    scanned_ = end_;
    len = end_ - begin_;
    if (len > max_message_) {
      error_ = make_error(ErrorKind::too_large, "input",
                          std::string(mode_ == MessageMode::lines ? "line" : "record") + " longer than the limit of " +
                              std::to_string(max_message_) + " bytes (--max-message)");
      return false;
    }
    if (!eof_ || len == 0) return false;
    total = len;
  }
  if (len > max_message_) {
    error_ = make_error(ErrorKind::too_large, "input",
                        std::string(mode_ == MessageMode::lines ? "line" : "record") + " of " + std::to_string(len) +
                            " bytes exceeds the limit of " + std::to_string(max_message_) +
                            " bytes (--max-message)");
    return false;
  }
  msg_off_ = begin_;
  msg_len_ = len;
  msg_total_ = total;
  msg_ts_ = unix_now();
  have_msg_ = true;
  return true;
}

bool Splitter::peek(std::span<const std::uint8_t>& payload, double& timestamp) {
  if (!scan()) return false;
  payload = {buf_.get() + msg_off_, msg_len_};
  timestamp = msg_ts_;
  return true;
}

void Splitter::pop() {
  if (!have_msg_) return;
  begin_ += msg_total_;
  consumed_total_ += msg_total_;
  if (scanned_ < begin_) scanned_ = begin_;
  have_msg_ = false;
  if (begin_ == end_) begin_ = end_ = scanned_ = 0;
}

}  // namespace dl
