// Connection over a socket pair: whole messages both ways in every dialect, backpressure
// (congested / drained) with a reader that stops, close_after_flush never cutting a message,
// and a peer that closes mid-message or sends garbage (errors naming the byte offset).
#include "lib/pymodaq/connection.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include "lib/net/net_testing.h"
#include "lib/pymodaq/synth.h"

using namespace dl;
using namespace dl::pymodaq;
using dl::testing::run_until;
using dl::testing::socket_pair;

namespace {

struct Side {
  std::vector<Message> got;
  std::vector<std::uint64_t> offsets;
  std::optional<Error> closed;
  int drained = 0;
  Connection::Callbacks callbacks() {
    Connection::Callbacks cb;
    cb.on_message = [this](Message&& m, std::uint64_t off, std::size_t) {
      got.push_back(std::move(m));
      offsets.push_back(off);
    };
    cb.on_closed = [this](const Error& e) { closed = e; };
    cb.on_drained = [this] { ++drained; };
    return cb;
  }
};

Message frame(Synth& s, const char* dim) {
  Message m = command_message("Done");
  m.data = s.frame(dim, 0.5, 1.7e9, "test");
  return m;
}

}  // namespace

TEST_CASE("whole messages both ways, every dialect, large frames in small reads") {
  for (const char* d : {"v1", "v2", "4.1.0", "4.2", "v4", "v5"}) {
    INFO(d);
    Reactor r;
    auto [a_fd, b_fd] = socket_pair(SOCK_NONBLOCK);
    Side a, b;
    Dialect dialect = *parse_dialect(d);
    Connection A(r, std::move(a_fd), "a", dialect, {}, a.callbacks());
    Connection B(r, std::move(b_fd), "b", dialect, {}, b.callbacks());
    SynthConfig c;
    c.shape_2d = {300, 200};
    Synth s(c);
    A.send(command_message("GRABBER"));
    for (int i = 0; i < 5; ++i) A.send(frame(s, "2D"));
    B.send(command_message("Send Data 1D"));
    B.send(position_message("move_abs", 2.5, "mm", 1.7e9));
    REQUIRE(run_until(r, [&] { return b.got.size() == 6 && a.got.size() == 2; }));
    CHECK(b.got[0].command == "GRABBER");
    CHECK(b.got[5].data->data[0].data[0].shape == std::vector<std::uint32_t>{300, 200});
    CHECK(b.offsets[1] == (dialect.gen == Generation::v5 ? 22u : 11u));
    CHECK(a.got[1].command == "move_abs");
    CHECK(position_value(a.got[1]) == 2.5);
    CHECK(A.bytes_out() == B.bytes_in());
    CHECK_FALSE(a.closed);
    CHECK_FALSE(b.closed);
  }
}

TEST_CASE("backpressure: congested while the reader pauses, drained when it reads again") {
  Reactor r;
  auto [a_fd, b_fd] = socket_pair(SOCK_NONBLOCK);
  Side a, b;
  Dialect v4 = *parse_dialect("v4");
  Connection A(r, std::move(a_fd), "a", v4, {}, a.callbacks());
  Connection B(r, std::move(b_fd), "b", v4, {}, b.callbacks());
  B.pause_reading(true);
  SynthConfig c;
  c.shape_2d = {512, 512};
  Synth s(c);
  int sent = 0;
  // A producer that asks congested() before each message, as the roles do.
  while (!A.congested() && sent < 100) {
    A.send(frame(s, "2D"));
    ++sent;
    r.run_once(std::chrono::milliseconds(1));
  }
  CHECK(A.congested());
  CHECK(sent < 100);  // memory stays bounded by the high-water mark, not by what is asked
  CHECK(A.pending() < Connection::kHighWater + (3u << 20));
  B.pause_reading(false);
  REQUIRE(run_until(r, [&] { return a.drained > 0; }));
  REQUIRE(run_until(r, [&] { return static_cast<int>(b.got.size()) == sent; }));
}

TEST_CASE("close_after_flush writes every queued byte, then closes") {
  Reactor r;
  auto [a_fd, b_fd] = socket_pair(SOCK_NONBLOCK);
  Side a, b;
  Dialect v5 = *parse_dialect("v5");
  Connection A(r, std::move(a_fd), "a", v5, {}, a.callbacks());
  Connection B(r, std::move(b_fd), "b", v5, {}, b.callbacks());
  SynthConfig c;
  c.shape_2d = {512, 512};
  Synth s(c);
  for (int i = 0; i < 6; ++i) A.send(frame(s, "2D"));
  bool flushed = false;
  A.close_after_flush([&] { flushed = true; });
  REQUIRE(run_until(r, [&] { return b.closed.has_value(); }));
  CHECK(flushed);
  CHECK(b.got.size() == 6);
  CHECK(b.closed->kind == ErrorKind::disconnected);
  CHECK(b.closed->id.empty());  // a clean end, not mid-message
}

TEST_CASE("a peer that stops mid-message or sends garbage: errors name the offset") {
  Dialect v4 = *parse_dialect("v4");
  {
    Reactor r;
    auto [a_fd, b_fd] = socket_pair(SOCK_NONBLOCK);
    Side b;
    Connection B(r, std::move(b_fd), "b", v4, {}, b.callbacks());
    std::vector<std::uint8_t> bytes;
    encode(command_message("Send Data 2D"), v4, bytes);
    encode(position_message("move_abs", 1, "", 0), v4, bytes);
    REQUIRE(::write(a_fd.get(), bytes.data(), bytes.size() - 5) > 0);
    a_fd = Fd();
    REQUIRE(run_until(r, [&] { return b.closed.has_value(); }));
    CHECK(b.got.size() == 1);
    CHECK(b.closed->id == "truncated");
    CHECK(b.closed->message().find("at byte 16") != std::string::npos);
  }
  {
    Reactor r;
    auto [a_fd, b_fd] = socket_pair(SOCK_NONBLOCK);
    Side b;
    Limits lim;
    lim.max_message = 1 << 20;
    Connection B(r, std::move(b_fd), "b", v4, lim, b.callbacks());
    std::vector<std::uint8_t> bytes;
    encode_string("Done", v4, bytes);  // then a DataToExport whose timestamp claims 2 GiB
    const std::uint8_t junk[] = {0, 0, 0, 12, 'D', 'a', 't', 'a', 'T', 'o', 'E', 'x', 'p', 'o', 'r', 't',
                                 0, 0, 0, 3, '<', 'f', '8', 0x7f, 0xff, 0xff, 0xf8};
    bytes.insert(bytes.end(), std::begin(junk), std::end(junk));
    REQUIRE(::write(a_fd.get(), bytes.data(), bytes.size()) > 0);
    REQUIRE(run_until(r, [&] { return b.closed.has_value(); }));
    INFO(b.closed->message());
    CHECK(b.closed->kind == ErrorKind::too_large);
    CHECK(b.closed->message().find("timestamp nbytes at byte 31") != std::string::npos);
  }
}
