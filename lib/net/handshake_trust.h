// HandshakeTrust: whether a dialer believes a refused TLS handshake. One flipped bit in a
// handshake reads exactly like a wrong key, so a refusal (an auth error) is taken for damage on
// the path and retried: once the listener has accepted our keys in this run, up to
// kAfterAccepted refusals in a row; before that, only by a dialer given time for its first
// connect (--wait), up to kFirstContact. Otherwise a refusal stays final (a wrong key fails
// fast). It only judges and counts; retrying is the caller's. Not thread-safe.
#pragma once

#include "lib/base/error.h"

namespace dl {

class HandshakeTrust {
 public:
  static constexpr int kAfterAccepted = 8, kFirstContact = 3;
  // `patient`: the dialer keeps trying its first connect for a while (--wait > 0).
  explicit HandshakeTrust(bool patient) : patient_(patient) {}
  // The listener accepted our keys on the current connection (its ticket or data came).
  void accepted() {
    known_ = true;
    in_a_row_ = 0;
  }
  bool known() const { return known_; }
  // A refused handshake: `e` with `final` lowered when it may be damage. Counts auth errors;
  // anything else is returned as it is.
  Error judge(Error e) {
    if (e.kind != ErrorKind::auth) return e;
    ++in_a_row_;
    if (known_ ? in_a_row_ < kAfterAccepted : patient_ && in_a_row_ < kFirstContact) e.final = false;
    return e;
  }

 private:
  bool patient_;
  bool known_ = false;
  int in_a_row_ = 0;
};

}  // namespace dl
