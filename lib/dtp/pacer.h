// pacer: how fast a DTP server sends one session. A token bucket refilled from the monotonic
// clock at every wake-up (so it paces the same with millisecond or nanosecond timers: a late
// wake-up finds more tokens, bounded by the burst), and a loss-driven rate controller fed by
// the client's reports. Pure arithmetic on caller-supplied times; no clocks, no I/O.
#pragma once

#include <cstdint>

namespace dl::dtp {

class TokenBucket {
 public:
  // rate in bytes/s; burst: the most tokens that may pile up (bytes), at least one send unit.
  void configure(double rate, double burst);
  double rate() const { return rate_; }
  // Adds what accrued since the last call (capped at burst); returns the tokens there are.
  double refill(std::int64_t now_ns);
  void spend(double bytes) { tokens_ -= bytes; }
  // Nanoseconds from the last refill until `bytes` tokens are there (0 when they are).
  std::int64_t wait_ns(double bytes) const;

 private:
  double rate_ = 1e6, burst_ = 65536, tokens_ = 0;
  std::int64_t last_ns_ = -1;
};

// Loss-driven rate control: grow by half per report until the first congestion (slow start),
// then back off by the excess loss and climb again, fast far below the rate that overflowed
// last and gently near it. A queue of unread datagrams building up at the receiver (its
// reports lag further and further behind what was sent) holds or lowers the rate before the
// receiver's large buffer overflows. A baseline learns a steady loss that does not answer to the rate
// (a lossy radio link, --drop) so it is not mistaken for congestion.
class RateController {
 public:
  RateController(double start, double min, double max, bool adaptive);
  // One report interval: `sent` datagrams the server numbered, `received` of them that arrived,
  // and `queue_s`, how long the datagrams sent but not yet seen by the receiver would take to
  // drain beyond the least such backlog seen lately (a queue building up at the receiver).
  // `delivered`: bytes/s that arrived over the interval (0: unknown); the rate stays within
  // twice that, so it cannot run away from what the path actually carries.
  void on_interval(std::uint64_t sent, std::uint64_t received, double queue_s = 0, double delivered = 0);
  double rate() const { return rate_; }  // bytes/s
  double loss() const { return loss_; }
  double baseline() const { return baseline_; }
  void set_max(double max);

 private:
  double rate_, start_, min_, max_;
  int cooldown_ = 0;  // reports to wait after a decrease before judging again
  bool adaptive_;
  double loss_ = 0, baseline_ = -1;
  bool probing_ = true;     // until the first congestion: grow by half per report
  double ceiling_ = 1e300;  // the rate at the last congestion; above 0.9 of it, growth is slow
};

}  // namespace dl::dtp
