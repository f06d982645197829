#include "lib/codec/ping_payload.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "lib/codec/frame.h"

using namespace dl::ping;

TEST_CASE("stamps round-trip, byte layout is big-endian at the documented offsets") {
  std::vector<std::uint8_t> buf(100, 0xAA);
  Stamps s{Kind::ping, 7, 1000, 0, 0, 0, 0, 0};
  encode_stamps(buf.data(), s);
  CHECK(buf[0] == 'D');
  CHECK(buf[3] == 'G');
  CHECK(buf[4] == 1);
  CHECK(buf[5] == 1);
  CHECK(buf[15] == 7);    // seq, big-endian at 8
  CHECK(buf[22] == 0x03);  // 1000 = 0x03E8 at 16..23
  CHECK(buf[23] == 0xE8);
  CHECK(buf[64] == 0xAA);  // padding untouched
  auto d = decode_stamps(buf);
  REQUIRE(d.ok());
  CHECK(d->kind == Kind::ping);
  CHECK(d->seq == 7);
  CHECK(d->t0 == 1000);
}

TEST_CASE("PING becomes PONG in place; the client's and responder's figures") {
  std::vector<std::uint8_t> buf(80, 0x5C);
  encode_stamps(buf.data(), Stamps{Kind::ping, 3, 100, 0, 0, 0, 0, 0});
  turn_into_pong(buf.data(), 5000, 5040);
  auto d = decode_stamps(buf);
  REQUIRE(d.ok());
  CHECK(d->kind == Kind::pong);
  CHECK(d->t0 == 100);
  CHECK(d->t1 == 5000);
  CHECK(d->t2 == 5040);
  CHECK(buf[79] == 0x5C);
  auto v = client_view(*d, 300);  // raw 200, turnaround 40
  CHECK(v.raw == 200);
  CHECK(v.turnaround == 40);
  CHECK(v.rtt == 160);
  Stamps a = *d;
  a.kind = Kind::ack3;
  a.t3 = 300;
  a.t4 = 310;
  a.rtt = v.rtt;
  // The responder hears the ack at 5210: 170 since its pong, minus the client's 10.
  CHECK(responder_rtt(a, 5210) == 160);
  // Negative stamps (a clock near zero) survive the unsigned wire encoding.
  a.t0 = -5;
  std::vector<std::uint8_t> ack(kPayloadHeader);
  encode_stamps(ack.data(), a);
  auto back = decode_stamps(ack);
  REQUIRE(back.ok());
  CHECK(back->t0 == -5);
  CHECK(back->rtt == 160);
}

TEST_CASE("garbage is refused with a named reason") {
  std::vector<std::uint8_t> buf(64, 0);
  CHECK(decode_stamps(std::span(buf).first(63)).error().id == "short-payload");
  CHECK(decode_stamps(buf).error().id == "bad-magic");
  encode_stamps(buf.data(), Stamps{});
  buf[4] = 2;
  CHECK(decode_stamps(buf).error().id == "version");
  buf[4] = 1;
  buf[5] = 9;
  CHECK(decode_stamps(buf).error().id == "bad-kind");
  buf[5] = 1;
  buf[7] = 1;
  CHECK(decode_stamps(buf).error().id == "bad-flags");
  buf[7] = 0;
  buf[5] = 3;
  buf.push_back(0);
  CHECK(decode_stamps(buf).error().id == "bad-ack3");
}

TEST_CASE("a probe is a DATA frame whose payload is the stamps block") {
  std::vector<std::uint8_t> f(dl::frame::kHeaderSize + kPayloadHeader);
  auto payload = std::span(f).subspan(dl::frame::kHeaderSize);
  encode_stamps(payload.data(), Stamps{Kind::ping, 1, 42});
  dl::frame::encode(f.data(), dl::frame::Type::data, 1, 0, payload);
  auto d = dl::frame::decode(f, 1 << 20);
  REQUIRE(d.status == dl::frame::Status::frame);
  CHECK(decode_stamps(payload)->t0 == 42);
}

TEST_CASE("figures from a hostile peer's stamps saturate instead of overflowing") {
  CHECK(stamp_sub(5, 3) == 2);
  CHECK(stamp_sub(INT64_MIN, 1) == INT64_MIN);
  CHECK(stamp_sub(INT64_MAX, -1) == INT64_MAX);
  CHECK(stamp_sub(0, INT64_MIN) == INT64_MAX);
  Stamps pong;
  pong.t0 = INT64_MIN;
  pong.t1 = INT64_MAX;
  pong.t2 = INT64_MIN;
  ClientView v = client_view(pong, INT64_MAX);
  CHECK(v.raw == INT64_MAX);
  CHECK(v.turnaround == INT64_MIN);
  CHECK(v.rtt == INT64_MAX);
  Stamps ack3;
  ack3.t2 = INT64_MAX;
  ack3.t3 = INT64_MAX;
  ack3.t4 = INT64_MIN;
  CHECK(responder_rtt(ack3, INT64_MIN) == 0);  // (MIN - MAX) - (MIN - MAX), each part clamped to MIN
}
