// refusal_log: the one-line-per-refused-connection log of a listener, rate-limited so that a
// flood of strangers cannot flood it: per kind of reason (idle, garbage, failed
// authentication ...) a burst of 10 lines, then one a second, and a line says how many were not
// shown. Separate buckets, so that a crowd of idle connections does not hide the one that sent
// the wrong key. It only formats and counts; `say` prints. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "lib/base/error.h"
#include "lib/net/reactor.h"

namespace dl {

class RefusalLog {
 public:
  explicit RefusalLog(Reactor& reactor, std::function<void(const std::string& line)> say);
  // "rejected connection PEER: WHY" unless this kind of reason is over its rate.
  void refused(const std::string& peer, const Error& why);
  // For callers that print the line themselves: false when it is over the rate (counted).
  bool allowed(ErrorKind why);
  // " (N more connections refused, not shown)" once after allowed() said true, else "".
  std::string hidden_note();

 private:
  struct Bucket {
    double tokens = 10;
    Clock::time_point refilled = Clock::now();
  };
  std::function<void(const std::string&)> say_;
  Timer timer_;  // says how many refusals were not shown, a second after the last one
  std::map<ErrorKind, Bucket> buckets_;
  std::uint64_t hidden_ = 0;
};

}  // namespace dl
