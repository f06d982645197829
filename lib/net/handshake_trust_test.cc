#include "lib/net/handshake_trust.h"

#include <doctest/doctest.h>

using namespace dl;

namespace {
Error refusal() {
  Error e = make_error(ErrorKind::auth, "tls 127.0.0.1:9000", "handshake failed: wrong pre-shared key");
  e.final = true;
  return e;
}
}  // namespace

TEST_CASE("a first contact is believed at once unless the dialer waits, then after three refusals") {
  HandshakeTrust hasty(false);
  CHECK(hasty.judge(refusal()).final);
  HandshakeTrust patient(true);
  CHECK_FALSE(patient.judge(refusal()).final);
  CHECK_FALSE(patient.judge(refusal()).final);
  CHECK(patient.judge(refusal()).final);
}

TEST_CASE("after an acceptance, eight refusals in a row are damage until the eighth") {
  HandshakeTrust t(false);
  t.accepted();
  CHECK(t.known());
  for (int i = 1; i < HandshakeTrust::kAfterAccepted; ++i) CHECK_FALSE(t.judge(refusal()).final);
  CHECK(t.judge(refusal()).final);
  t.accepted();  // a connection got through again: the count starts over
  CHECK_FALSE(t.judge(refusal()).final);
}

TEST_CASE("other errors pass as they are and are not counted") {
  HandshakeTrust t(true);
  Error p = protocol_error("tls-bad-record", "tls 127.0.0.1:9000", "integrity check");
  for (int i = 0; i < 5; ++i) CHECK(t.judge(p).final == p.final);
  CHECK_FALSE(t.judge(refusal()).final);  // still the first refusal
}
