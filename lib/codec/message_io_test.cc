#include "lib/codec/message_io.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace dl;

namespace {
std::vector<std::string> split_all(MessageMode mode, const std::string& input, std::size_t piece,
                                   std::uint32_t max = 1 << 20, std::optional<Error>* err = nullptr) {
  Splitter s(mode, max);
  std::vector<std::string> out;
  std::size_t pos = 0;
  auto drain = [&] {
    std::span<const std::uint8_t> p;
    double ts;
    while (s.peek(p, ts)) {
      out.emplace_back(reinterpret_cast<const char*>(p.data()), p.size());
      s.pop();
    }
  };
  while (pos < input.size()) {
    auto sp = s.space();
    if (sp.empty()) break;
    std::size_t n = std::min({piece, sp.size(), input.size() - pos});
    std::memcpy(sp.data(), input.data() + pos, n);
    s.filled(n);
    pos += n;
    drain();
    if (s.error()) break;
  }
  s.end_of_input();
  drain();
  if (err) *err = s.error() ? std::optional<Error>(*s.error()) : std::nullopt;
  return out;
}
}  // namespace

TEST_CASE("lines in any read size") {
  for (std::size_t piece : {1, 2, 3, 7, 100}) {
    auto v = split_all(MessageMode::lines, "a\nbb\n\nccc", piece);
    REQUIRE(v.size() == 4);
    CHECK(v[0] == "a");
    CHECK(v[2] == "");
    CHECK(v[3] == "ccc");  // last line without newline still arrives
  }
}

TEST_CASE("null-terminated records") {
  auto v = split_all(MessageMode::null, std::string("x\0yz\0", 5), 2);
  REQUIRE(v.size() == 2);
  CHECK(v[1] == "yz");
}

TEST_CASE("framed records round trip with timestamps") {
  std::string in;
  for (int i = 0; i < 3; ++i) {
    std::uint8_t h[kRecordHeaderSize];
    std::string payload(static_cast<std::size_t>(i * 5), 'p');
    encode_record_header(h, static_cast<std::uint32_t>(payload.size()), 10.0 + i);
    in.append(reinterpret_cast<char*>(h), sizeof h);
    in += payload;
  }
  auto v = split_all(MessageMode::framed, in, 3);
  REQUIRE(v.size() == 3);
  CHECK(v[2].size() == 10);
}

TEST_CASE("oversize line and bad record give named errors") {
  std::optional<Error> err;
  split_all(MessageMode::lines, std::string(3000, 'x') + "\n", 512, 1024, &err);
  REQUIRE(err);
  CHECK(err->kind == ErrorKind::too_large);
  CHECK(err->message().find("1024") != std::string::npos);
  split_all(MessageMode::framed, "garbage that is not a record", 5, 1024, &err);
  REQUIRE(err);
  CHECK(err->id == "bad-record");
  std::uint8_t h[kRecordHeaderSize];
  encode_record_header(h, 100, 1.0);
  split_all(MessageMode::framed, std::string(reinterpret_cast<char*>(h), sizeof h) + "short", 4, 1024, &err);
  REQUIRE(err);
  CHECK(err->id == "cut-record");
}
