#include "lib/ping/report.h"

#include <doctest/doctest.h>

#include <string>

using namespace dl::ping;

namespace {
RunFigures sample_run() {
  RunFigures run;
  run.target = "127.0.0.1:9000";
  run.proto = "native";
  run.transport = "tcp";
  run.setup_s = 45e-6;
  PhaseFigures p;
  p.size = 64;
  p.wire_bytes = 96;
  p.rate = RateTracker(30);
  for (int i = 0; i < 10; ++i) {
    p.rtt.add(10000 + i * 100);
    p.raw.add(11000 + i * 100);
    p.turnaround.add(1000);
    p.rate.arrival(i * 50'000'000LL);
  }
  p.sent = 11;
  p.received = 10;
  p.lost = 1;
  p.timeouts = 1;
  p.duration_s = 0.5;
  run.phases.push_back(p);
  return run;
}
}  // namespace

TEST_CASE("fmt_ns picks a readable unit") {
  CHECK(fmt_ns(850) == "850 ns");
  CHECK(fmt_ns(1234) == "1.23 us");
  CHECK(fmt_ns(12345) == "12.3 us");
  CHECK(fmt_ns(1.5e6) == "1.50 ms");
  CHECK(fmt_ns(2.5e9) == "2.500 s");
}

TEST_CASE("probe lines read like ping's") {
  CHECK(probe_line("h:1", 96, 3, 23400, 25100, 1700, true, false) ==
        "96 bytes from h:1: seq=3 rtt=23.4 us (raw 25.1 us, turnaround 1.70 us)");
  auto l = probe_line("h:1", 145, 1, 5000, 5000, 0, false, true);
  CHECK(l.find("turnaround included") != std::string::npos);
  CHECK(l.find("LATE") != std::string::npos);
}

TEST_CASE("the text summary states counts, percentiles, jitter, RTT/2 and rate") {
  std::string s = text_summary(sample_run(), true);
  CHECK(s.find("11 sent, 10 received, 1 lost (9.1%)") != std::string::npos);
  CHECK(s.find("connection set-up 45.0 us") != std::string::npos);
  CHECK(s.find("rtt min/mean/max/stddev = 10.0/10.") != std::string::npos);  // one unit for all
  CHECK(s.find("/10.9/") != std::string::npos);
  CHECK(s.find("p50/p90/p99/p99.9/p99.99") != std::string::npos);
  CHECK(s.find("RFC 3550") != std::string::npos);
  CHECK(s.find("RTT/2 (not one-way delay") != std::string::npos);
  CHECK(s.find("9 of 9 intervals below --min-rate 30/s") != std::string::npos);
  CHECK(s.find("#") != std::string::npos);  // the terminal histogram
}

TEST_CASE("the JSON summary has the figures and the buckets") {
  std::string j = json_summary(sample_run());
  CHECK(j.front() == '{');
  CHECK(j.back() == '\n');
  CHECK(j.find("\"sent\": 11, \"received\": 10, \"lost\": 1") != std::string::npos);
  CHECK(j.find("\"setup_ns\": 45000") != std::string::npos);
  CHECK(j.find("\"min\": 10000,") != std::string::npos);
  CHECK(j.find("\"histogram\": [[9984, 10048, 1]") != std::string::npos);  // 1/128-wide buckets
  CHECK(j.find("\"below_min_rate\": 9") != std::string::npos);
  CHECK(j.find("fastsocket_formula") == std::string::npos);
  // Balanced brackets (a cheap well-formedness check; the Python tests parse it for real).
  int depth = 0;
  for (char c : j) {
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    REQUIRE(depth >= 0);
  }
  CHECK(depth == 0);
}

TEST_CASE("terminal histogram of nothing is empty") {
  Histogram h;
  CHECK(terminal_histogram(h).empty());
}
