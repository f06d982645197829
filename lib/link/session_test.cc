#include "lib/link/session.h"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace dl;

namespace {

SessionConfig dialer_cfg(std::uint64_t window = 1000) { return SessionConfig{false, 1 << 20, 5000, window}; }
SessionConfig listener_cfg(std::uint64_t window = 1000) { return SessionConfig{true, 1 << 20, 5000, window}; }

// One handshake between two sessions, as Link does it: the dialer's HELLO is admitted, the
// listener answers, the dialer checks the answer. Returns the listener's verdict.
Session::Verdict handshake(Session& d, Session& l, bool session_over = false) {
  frame::Hello dh = d.hello();
  auto v = l.admit(dh, session_over || !l.known());
  if (v.action == Session::Admit::refuse) return v;
  l.establish(dh);
  frame::Hello lh = l.hello();
  REQUIRE(d.check_answer(lh));
  d.establish(lh);
  return v;
}

// The HELLO bytes as they go on the wire, decoded again (what a peer really sees).
frame::Hello through_wire(const frame::Hello& h) {
  std::uint8_t p[frame::kHelloSize];
  frame::encode_hello(p, h);
  auto r = frame::decode_hello(p);
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("admission: a listener adopts the first session, refuses others alone") {
  Session d(dialer_cfg()), l(listener_cfg());
  CHECK(!l.known());
  CHECK(handshake(d, l).action == Session::Admit::adopt);
  CHECK(l.known());
  CHECK(d.incarnation() == l.incarnation());
  CHECK(d.incarnation() != 0);

  Session other(dialer_cfg());
  auto v = l.admit(through_wire(other.hello()), false);
  CHECK(v.action == Session::Admit::refuse);
  CHECK(v.why.id == "session-busy");
  CHECK(is_retryable(v.why));  // the newcomer may get in once this session ends

  // Keep-open: once the session is over, a new one is adopted.
  CHECK(l.admit(other.hello(), true).action == Session::Admit::adopt);
}

TEST_CASE("admission: session ids and incarnations are random and never zero") {
  Session a(dialer_cfg()), b(dialer_cfg());
  auto ha = a.hello(), hb = b.hello();
  CHECK((ha.session_hi != hb.session_hi || ha.session_lo != hb.session_lo));
  CHECK(ha.session_hi != 0);
  Session l1(listener_cfg()), l2(listener_cfg());
  CHECK(l1.incarnation() != l2.incarnation());
  CHECK(l1.incarnation() != 0);
}

TEST_CASE("resume: the dialer's current token is accepted, a replayed HELLO is not") {
  Session d(dialer_cfg()), l(listener_cfg());
  frame::Hello first = d.hello();  // what an observer of the first connection saw
  handshake(d, l);
  l.confirm();                     // the dialer spoke after our HELLO
  // Data flows: the dialer sends 3 messages, the listener takes 2.
  d.record(100, 68, false);
  d.record(200, 68, false);
  d.record(300, 68, false);
  for (std::uint64_t s = 1; s <= 3; ++s) CHECK(l.on_frame(s) == Session::Rx::accept);
  l.delivered(2);
  REQUIRE(d.on_ack(2, 1000));

  SUBCASE("replaying the first HELLO is refused and changes nothing") {
    auto v = l.admit(first, false);
    CHECK(v.action == Session::Admit::refuse);
    CHECK(v.why.id == "stale-hello");
    CHECK(l.recv_next() == 4);
  }
  SUBCASE("a real reconnect resumes, and then its own HELLO cannot be replayed") {
    frame::Hello again = through_wire(d.hello());
    auto v = l.admit(again, false);
    REQUIRE(v.action == Session::Admit::resume);
    l.establish(again);
    frame::Hello answer = l.hello();
    REQUIRE(d.check_answer(answer));
    auto e = d.establish(answer);
    CHECK(e.from_seq == 4);  // the listener holds 1..3: nothing is sent again
    // Until the dialer speaks, the token it presented still works (it may not have our answer).
    CHECK(l.admit(again, false).action == Session::Admit::resume);
    l.confirm();
    auto replay = l.admit(again, false);
    CHECK(replay.action == Session::Admit::refuse);
    CHECK(!is_retryable(replay.why));
  }
  SUBCASE("a resume that claims less than was acknowledged is refused alone") {
    l.record(50, 18, false);  // the listener sent one message the dialer took and acked
    CHECK(d.on_frame(1) == Session::Rx::accept);
    d.delivered(1);
    REQUIRE(l.on_ack(1));
    frame::Hello forged = d.hello();
    forged.delivered = 0;
    forged.recv_next = 1;
    CHECK(l.admit(forged, false).action == Session::Admit::refuse);
  }
}

TEST_CASE("restart: a dialer that finds another incarnation reports session-lost, never replays") {
  Session d(dialer_cfg()), l(listener_cfg());
  handshake(d, l);
  d.record(100, 68, false);  // sent, never acknowledged: it may have been delivered
  Session restarted(listener_cfg());
  // The restarted listener refuses the resume outright (final) ...
  auto v = restarted.admit(through_wire(d.hello()), false);
  CHECK(v.action == Session::Admit::refuse);
  CHECK(v.why.id == "session-lost");
  CHECK(!is_retryable(v.why));
  // ... and a dialer that got an answer from another incarnation refuses it too.
  frame::Hello answer = d.hello();
  answer.incarnation = restarted.incarnation();
  answer.token = 1;
  auto st = d.check_answer(answer);
  REQUIRE(!st);
  CHECK(st.error().id == "session-lost");
  CHECK(!is_retryable(st.error()));
}

TEST_CASE("restart: a listener that lost what it acknowledged is session-lost") {
  Session d(dialer_cfg()), l(listener_cfg());
  handshake(d, l);
  d.record(100, 68, false);
  REQUIRE(d.on_ack(1));
  frame::Hello answer = l.hello();  // recv_next 1: it forgot seq 1
  auto st = d.check_answer(answer);
  REQUIRE(!st);
  CHECK(st.error().id == "session-lost");
}

TEST_CASE("credit: whole frames within the window, and always the first one") {
  Session d(dialer_cfg()), l(listener_cfg(250));
  handshake(d, l);
  CHECK(d.peer_window() == 250);
  // Frames end at ring offsets 100, 200, 300, 1300 (tail 0).
  d.record(100, 68, false);
  d.record(200, 68, false);
  d.record(300, 68, false);
  d.record(1300, 968, false);
  CHECK(d.credit_end(0, 1300) == 200);  // 300 would exceed 0 + 250
  REQUIRE(d.on_ack(2));
  CHECK(d.credit_end(200, 1300) == 300);
  REQUIRE(d.on_ack(3));
  // The 1000-byte frame is larger than the window: it goes alone once all before it is acked.
  CHECK(d.credit_end(300, 1300) == 1300);
  // An ACK can change the window.
  REQUIRE(d.on_ack(3, 5000));
  CHECK(d.peer_window() == 5000);
  CHECK(!d.on_ack(3, 4));  // a window smaller than a frame header is a protocol fault
}

TEST_CASE("acks: cumulative, of delivered messages, never of unsent ones") {
  Session d(dialer_cfg());
  d.record(100, 68, false);
  d.record(132, 0, true);  // END
  auto bad = d.on_ack(5);
  REQUIRE(!bad);
  CHECK(bad.error().id == "bad-ack");
  auto a = d.on_ack(1);
  REQUIRE(a);
  CHECK(a->release_to == 100);
  CHECK(d.acked_bytes() == 68);
  CHECK(d.acked_messages() == 1);
  CHECK(d.data_acked());
  CHECK(!d.end_acked());
  REQUIRE(d.on_ack(2));
  CHECK(d.end_acked());

  Session r(listener_cfg());
  CHECK(r.on_frame(1) == Session::Rx::accept);
  CHECK(r.on_frame(1) == Session::Rx::duplicate);
  CHECK(r.on_frame(3) == Session::Rx::gap);
  CHECK(!r.ack_due());  // held, not delivered: not acknowledged
  r.delivered(1);
  CHECK(r.ack_due());
  r.ack_sent();
  CHECK(!r.ack_due());
}

TEST_CASE("replay offsets: resume starts after what the peer holds") {
  Session d(dialer_cfg());
  d.record(100, 68, false);
  d.record(200, 68, false);
  d.record(300, 68, false);
  CHECK(d.offset_of(1, 0) == 0);
  CHECK(d.offset_of(3, 0) == 200);
  CHECK(d.frame_end_at(150, 0) == 200);  // inside the second frame
  CHECK(d.frame_end_at(200, 0) == 200);  // at a boundary
}

TEST_CASE("handshake corruption: every damaged HELLO byte is refused or harmless") {
  Session d(dialer_cfg());
  std::uint8_t p[frame::kHelloSize];
  frame::encode_hello(p, d.hello());
  // Flip each byte in turn: decode_hello either refuses it (retryable unless it claims another
  // version) or yields a HELLO that a fresh listener refuses or adopts as a new session
  // (never a crash, never a resume of something it does not hold).
  for (std::size_t i = 0; i < frame::kHelloSize; ++i) {
    std::uint8_t q[frame::kHelloSize];
    std::memcpy(q, p, sizeof q);
    q[i] ^= 0x5A;
    auto h = frame::decode_hello(q);
    if (!h) {
      if (h.error().id != "version") CHECK(is_retryable(h.error()));
      continue;
    }
    Session l(listener_cfg());
    auto v = l.admit(*h, true);
    CHECK(v.action != Session::Admit::resume);
  }
}

TEST_CASE("keep-open: reset keeps the incarnation and forgets the session") {
  Session l(listener_cfg());
  Session d(dialer_cfg());
  handshake(d, l);
  auto inc = l.incarnation();
  l.reset();
  CHECK(!l.known());
  CHECK(l.incarnation() == inc);
  Session d2(dialer_cfg());
  CHECK(handshake(d2, l).action == Session::Admit::adopt);
}

TEST_CASE("a dialer that never got the listener's first answer may say its first HELLO again") {
  Session d(dialer_cfg()), l(listener_cfg());
  frame::Hello first = d.hello();
  REQUIRE(l.admit(first, true).action == Session::Admit::adopt);
  l.establish(first);  // our answer is lost on the way (corrupted)
  CHECK(l.admit(first, false).action == Session::Admit::resume);
  l.establish(first);
  REQUIRE(d.check_answer(l.hello()));
  d.establish(l.hello());
  l.confirm();
  CHECK(l.admit(first, false).action == Session::Admit::refuse);  // now it is a replay
}

TEST_CASE("end of stream per direction: complete once both ENDs are through") {
  Session d(dialer_cfg()), l(listener_cfg());
  handshake(d, l);
  d.record(100, 68, false);
  d.record(132, 0, true);  // the dialer's END (seq 2)
  l.record(32, 0, true);   // the listener sends nothing: its END at once (seq 1)
  CHECK(l.on_frame(1) == Session::Rx::accept);
  CHECK(l.on_frame(2) == Session::Rx::accept);
  l.delivered(1);
  l.peer_end_delivered(2);
  CHECK(l.peer_ended());
  CHECK(!l.complete());  // its own END is not acknowledged, nor the peer's acked yet
  CHECK(d.on_frame(1) == Session::Rx::accept);
  d.peer_end_delivered(1);
  REQUIRE(l.on_ack(1));
  REQUIRE(d.on_ack(2));
  CHECK(d.end_acked());
  CHECK(!d.complete());  // the ACK for the listener's END is not sent yet
  d.ack_sent();
  CHECK(d.complete());
  CHECK(!l.complete());
  l.ack_sent();
  CHECK(l.complete());
}

TEST_CASE("a replay of the dialer's unconfirmed HELLO never locks the real dialer out") {
  // The dialer got our answer (its new token) and has not spoken since, so its old HELLO is
  // still accepted (our answer might have been lost). A stranger replaying that HELLO in this
  // window is admitted as a resume, but the token the real dialer holds must stay good: its
  // reconnect resumes the session instead of being refused as stale (a final error).
  Session d(dialer_cfg()), l(listener_cfg());
  frame::Hello first = d.hello();
  REQUIRE(handshake(d, l).action == Session::Admit::adopt);
  REQUIRE(l.admit(first, false).action == Session::Admit::resume);  // the replay
  l.establish(first);
  frame::Hello real = through_wire(d.hello());  // the real dialer comes back with what it holds
  auto v = l.admit(real, false);
  CHECK(v.action == Session::Admit::resume);
  CHECK(v.why.id.empty());
  l.establish(real);
  REQUIRE(d.check_answer(l.hello()));
  d.establish(l.hello());
  l.confirm();
  CHECK(l.admit(first, false).action == Session::Admit::refuse);
  CHECK(l.admit(real, false).action == Session::Admit::refuse);  // replaced by the next token
  CHECK(l.admit(d.hello(), false).action == Session::Admit::resume);
}
