#include "lib/net/refusal_log.h"

#include <algorithm>

namespace dl {

RefusalLog::RefusalLog(Reactor& reactor, std::function<void(const std::string&)> say)
    : say_(std::move(say)), timer_(reactor, [this] {
        if (hidden_) say_(std::to_string(hidden_) + " more connections refused, not shown");
        hidden_ = 0;
      }) {}

bool RefusalLog::allowed(ErrorKind why) {
  constexpr double kBurst = 10, kPerSecond = 1;
  auto now = Clock::now();
  Bucket& b = buckets_[why];
  double secs = std::chrono::duration<double>(now - b.refilled).count();
  b.refilled = now;
  b.tokens = std::min(kBurst, b.tokens + secs * kPerSecond);
  if (b.tokens < 1) {
    hidden_++;
    timer_.arm(now + std::chrono::seconds(1));
    return false;
  }
  b.tokens -= 1;
  return true;
}

std::string RefusalLog::hidden_note() {
  if (!hidden_) return {};
  std::string s = " (" + std::to_string(hidden_) + " more connections refused, not shown)";
  hidden_ = 0;
  return s;
}

void RefusalLog::refused(const std::string& peer, const Error& why) {
  if (!allowed(why.kind)) return;
  say_("rejected connection " + peer + ": " + why.message() + hidden_note());
}

}  // namespace dl
