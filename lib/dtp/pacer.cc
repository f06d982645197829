#include "lib/dtp/pacer.h"

#include <algorithm>
#include <cmath>

namespace dl::dtp {

namespace {
// A queue at the receiver is judged in time and in bytes: at 8 Gbit/s a 32 MiB receive buffer
// (dtpget's default) holds only 33 ms, so a quarter and a half of it are limits too.
constexpr double kQueueHoldBytes = 8 << 20;
constexpr double kQueueBackoffBytes = 16 << 20;
}  // namespace

void TokenBucket::configure(double rate, double burst) {
  rate_ = std::max(rate, 1.0);
  burst_ = std::max(burst, 1.0);
  tokens_ = std::min(tokens_, burst_);
}

double TokenBucket::refill(std::int64_t now_ns) {
  if (last_ns_ < 0) {
    last_ns_ = now_ns;
    tokens_ = burst_;
    return tokens_;
  }
  if (now_ns > last_ns_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now_ns - last_ns_) * 1e-9);
    last_ns_ = now_ns;
  }
  return tokens_;
}

std::int64_t TokenBucket::wait_ns(double bytes) const {
  if (tokens_ >= bytes) return 0;
  return static_cast<std::int64_t>(std::ceil((bytes - tokens_) / rate_ * 1e9));
}

RateController::RateController(double start, double min, double max, bool adaptive)
    : rate_(adaptive ? std::clamp(start, min, max) : max), start_(start), min_(min), max_(max), adaptive_(adaptive) {}

void RateController::set_max(double max) {
  max_ = std::max(max, 1.0);  // a cap below the adaptation floor still wins (--rate 20k)
  rate_ = adaptive_ ? std::clamp(rate_, std::min(min_, max_), max_) : max_;
}

void RateController::on_interval(std::uint64_t sent, std::uint64_t received, double queue_s,
                                 double delivered) {
  if (sent == 0) return;
  loss_ = 1.0 - std::min(1.0, static_cast<double>(received) / static_cast<double>(sent));
  if (!adaptive_) return;
  if (baseline_ < 0) baseline_ = std::min(loss_, 0.5);
  // The baseline falls at once with the loss (the rate drop worked, or the link improved) and
  // rises slowly, so only loss that persists at every rate becomes "the link's own".
  if (loss_ < baseline_) baseline_ += 0.5 * (loss_ - baseline_);
  else baseline_ += 0.05 * (std::min(loss_, 0.5) - baseline_);
  double excess = loss_ - baseline_;
  if (cooldown_ > 0) {
    // A decrease takes a while to show in the reports (the receiver first drains what is
    // queued): judge again only after it had time to.
    --cooldown_;
  } else if (excess > 0.02) {
    // Remember where the path overflowed; back off by the excess loss (at most by half).
    ceiling_ = rate_;
    probing_ = false;
    rate_ *= std::max(0.5, 1.0 - excess);
    cooldown_ = 3;
  } else if (queue_s > 0.050 || queue_s * rate_ > kQueueBackoffBytes) {
    // The receiver falls behind: datagrams pile up unread. Back off before its buffer
    // overflows (that loss would only show up a whole buffer later).
    ceiling_ = rate_;
    probing_ = false;
    rate_ *= 0.85;
    cooldown_ = 3;
  } else if (queue_s > 0.025 || queue_s * rate_ > kQueueHoldBytes) {
    probing_ = false;  // a queue is forming: hold the rate
  } else if (probing_) {
    rate_ *= 1.5;  // no congestion seen yet: find the path's rate in a few reports
  } else if (rate_ < 0.9 * ceiling_) {
    rate_ *= 1.10;  // far below the last overflow: climb fast
  } else {
    rate_ *= 1.01;  // near it: probe gently, so the sawtooth stays shallow
    if (rate_ > ceiling_) ceiling_ = rate_ * 1.5;  // past it without loss: the path grew
  }
  // Never far ahead of what actually gets through: a rate the sender cannot reach (or the
  // receiver cannot take) would only grow further while the loss signal is still on its way.
  if (delivered > 0) rate_ = std::min(rate_, std::max(2 * delivered, start_));
  rate_ = std::clamp(rate_, std::min(min_, max_), max_);
}

}  // namespace dl::dtp
