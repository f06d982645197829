#include "lib/codec/fastsocket.h"

#include <doctest/doctest.h>

#include <array>
#include <string>

using namespace dl::fastsocket;

TEST_CASE("encoders write exactly what Python's json.dumps writes") {
  std::string out;
  std::string id = json_string("0b6f1c1e-8d8a-4f6e-9d55-0a1b2c3d4e5f");
  append_message(out, id, "\"hello\"");
  CHECK(out == "{\"id\": \"0b6f1c1e-8d8a-4f6e-9d55-0a1b2c3d4e5f\", \"type\": \"message\", \"payload\": \"hello\"}\n");
  out.clear();
  append_server_ack(out, id);
  CHECK(out == "{\"id\": \"0b6f1c1e-8d8a-4f6e-9d55-0a1b2c3d4e5f\", \"type\": \"ack\"}\n");
  out.clear();
  append_client_ack(out, id, 651234);
  CHECK(out == "{\"id\": \"0b6f1c1e-8d8a-4f6e-9d55-0a1b2c3d4e5f\", \"type\": \"ack\", \"send_and_ack_time_ns\": 651234}\n");
}

TEST_CASE("json_string escapes like ensure_ascii") {
  CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_string("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
  CHECK(json_string(std::string("\x01\x7f", 2)) == "\"\\u0001\\u007f\"");
  CHECK(json_string("\xc3\xa9") == "\"\\u00e9\"");                      // é
  CHECK(json_string("\xf0\x9f\x98\x80") == "\"\\ud83d\\ude00\"");       // U+1F600
  CHECK(json_string("/") == "\"/\"");
  CHECK(json_string("\xff") == "\"\\ufffd\"");
}

TEST_CASE("a message carries no T1 even when a stray send_and_ack_time_ns is there (fuzz find)") {
  auto m = decode_line("{\"id\": \"a\", \"type\": \"message\", \"payltype\": \"ack\", \"send_and_ack_time_ns\": 651234}");
  REQUIRE(m.ok());
  CHECK(m->type == Type::message);
  CHECK(!m->has_time);
}

TEST_CASE("decode the three frames in any key order") {
  auto m = decode_line("{\"id\": \"abc\", \"type\": \"message\", \"payload\": {\"x\": [1, 2.5e3, null, true]}}");
  REQUIRE(m.ok());
  CHECK(m->type == Type::message);
  CHECK(m->id_json == "\"abc\"");
  CHECK(m->payload == "{\"x\": [1, 2.5e3, null, true]}");
  CHECK(!m->has_time);
  auto a = decode_line("{\"send_and_ack_time_ns\": 123456789012, \"type\": \"ack\", \"id\": \"abc\"}");
  REQUIRE(a.ok());
  CHECK(a->type == Type::ack);
  CHECK(a->has_time);
  CHECK(a->send_and_ack_time_ns == 123456789012);
  auto s = decode_line("  {\"id\":\"abc\",\"type\":\"ack\"}  ");
  REQUIRE(s.ok());
  CHECK(!s->has_time);
  auto f = decode_line("{\"id\": \"x\", \"type\": \"ack\", \"send_and_ack_time_ns\": 1.5e3}");
  REQUIRE(f.ok());
  CHECK(f->send_and_ack_time_ns == 1500);
  // Python's extensions are values json.loads accepts.
  CHECK(decode_line("{\"id\": \"x\", \"type\": \"message\", \"payload\": [NaN, -Infinity]}").ok());
}

TEST_CASE("ids are echoed in their canonical json.dumps form") {
  auto m = decode_line("{\"id\": \"\\u00E9\\/\\ud83d\\ude00\\udc00\xc3\xa9\", \"type\": \"message\", \"payload\": 1}");
  REQUIRE(m.ok());
  CHECK(m->id_json == "\"\\u00e9/\\ud83d\\ude00\\udc00\\u00e9\"");
  auto k = decode_line("{\"i\\u0064\": \"q\", \"type\": \"ack\"}");  // an escaped key is the same key
  REQUIRE(k.ok());
  CHECK(k->id_json == "\"q\"");
}

TEST_CASE("garbage is refused with a named reason") {
  auto id = [](std::string_view l) { return decode_line(l).error().id; };
  CHECK(id("") == "bad-json");
  CHECK(id("not json") == "bad-json");
  CHECK(id("[1, 2]") == "not-object");
  CHECK(id("{\"type\": \"ack\"}") == "missing-id");
  CHECK(id("{\"id\": 5, \"type\": \"ack\"}") == "bad-id");
  CHECK(id("{\"id\": \"a\"}") == "bad-type");
  CHECK(id("{\"id\": \"a\", \"type\": \"nack\"}") == "bad-type");
  CHECK(id("{\"id\": \"a\", \"type\": \"ack\", \"send_and_ack_time_ns\": \"7\"}") == "bad-time");
  CHECK(id("{\"id\": \"a\", \"type\": \"ack\", \"send_and_ack_time_ns\": 1e30}") == "bad-time");
  CHECK(id("{\"id\": \"a\", \"type\": \"ack\",}") == "bad-json");
  CHECK(id("{\"id\": \"a\", \"type\": \"ack\"} x") == "bad-json");
  CHECK(id("{\"id\": \"a\x01\", \"type\": \"ack\"}") == "bad-json");
  CHECK(id("{\"id\": \"\xc3\", \"type\": \"ack\"}") == "bad-utf8");
  CHECK(id("{\"id\": \"a\", \"type\": \"message\", \"payload\": [1,]}") == "bad-json");
  CHECK(id("{\"id\": \"a\", \"type\": \"message\", \"payload\": 01}") == "bad-json");
  CHECK(id(std::string(600, '[')) == "too-deep");
  CHECK(id(std::string(kMaxLine, ' ')) == "line-too-long");
  CHECK(decode_line(std::string(kMaxLine - 1, ' ')).error().id == "bad-json");  // size itself is fine
}

TEST_CASE("uuid4 text has the version and variant bits") {
  std::array<std::uint8_t, 16> r;
  r.fill(0xFF);
  auto u = uuid4_text(r);
  CHECK(u.size() == 36);
  CHECK(u == "ffffffff-ffff-4fff-bfff-ffffffffffff");
  r.fill(0);
  CHECK(uuid4_text(r) == "00000000-0000-4000-8000-000000000000");
}
