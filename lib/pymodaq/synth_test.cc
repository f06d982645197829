#include "lib/pymodaq/synth.h"

#include <doctest/doctest.h>

#include "lib/codec/pymodaq_codec.h"

using namespace dl::pymodaq;

namespace {
// Index of the largest element of channel `ch`.
std::size_t argmax(const Array& a) {
  auto dt = *parse_dtype(a.dtype);
  std::size_t best = 0;
  for (std::size_t i = 1; i < a.elements(); ++i)
    if (a.at(i, dt) > a.at(best, dt)) best = i;
  return best;
}
}  // namespace

TEST_CASE("shapes parse and are bounded") {
  CHECK(*parse_shape("512x512", "--shape-2d") == std::vector<std::uint32_t>{512, 512});
  CHECK(*parse_shape("4,8,16", "--shape-nd") == std::vector<std::uint32_t>{4, 8, 16});
  CHECK_FALSE(parse_shape("0x4", "x"));
  CHECK_FALSE(parse_shape("4xx4", "x"));
  CHECK_FALSE(parse_shape("", "x"));
  CHECK_FALSE(parse_shape("65536x65536", "x"));
}

TEST_CASE("frames have the asked shape, dtype, channels, and a peak that moves") {
  SynthConfig c;
  c.channels = 2;
  c.dtype = ">u2";
  c.shape_2d = {64, 48};
  Synth s(c);
  Dte a = s.frame("2D", 0, 1.7e9, "cam");
  REQUIRE(a.data.size() == 1);
  const Dwa& w = a.data[0];
  CHECK(w.dim == "Data2D");
  CHECK(w.labels == std::vector<std::string>{"CH00", "CH01"});
  REQUIRE(w.data.size() == 2);
  CHECK(w.data[0].shape == std::vector<std::uint32_t>{64, 48});
  CHECK(w.data[0].dtype == ">u2");
  CHECK(w.data[0].bytes.size() == 64 * 48 * 2);
  Dte b = s.frame("2D", 2.5, 1.7e9, "cam");
  CHECK(argmax(a.data[0].data[0]) != argmax(b.data[0].data[0]));
  CHECK(argmax(a.data[0].data[0]) != argmax(a.data[0].data[1]));  // channels are phase-shifted
  for (const char* dim : {"0D", "1D", "ND"}) {
    Dte d = s.frame(dim, 1, 1.7e9, "cam");
    CHECK(d.data[0].dim == std::string("Data") + dim);
    // Every dialect can carry it (v1 aside for ND) and PyMoDAQ's consistency rules hold.
    for (const char* g : {"v2", "v4", "v5"}) {
      Message m = command_message("Done");
      m.data = d;
      std::vector<std::uint8_t> out;
      encode(m, *parse_dialect(g), out);
      CHECK(decode(std::span<const std::uint8_t>(out), *parse_dialect(g)).status == DecodeStatus::message);
    }
  }
  CHECK(s.frame("0D", 0, 0, "x").data[0].data[0].shape == std::vector<std::uint32_t>{1});
}

TEST_CASE("float frames: peak near the amplitude, noise around it") {
  SynthConfig c;
  c.shape_1d = {200};
  Synth s(c);
  Dte d = s.frame("1D", 0, 0, "x");
  const Array& a = d.data[0].data[0];
  auto dt = *parse_dtype(a.dtype);
  double mx = a.at(argmax(a), dt);
  CHECK(mx > 0.8);
  CHECK(mx < 1.4);
}
