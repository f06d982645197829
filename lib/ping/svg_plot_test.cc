#include "lib/ping/svg_plot.h"

#include <doctest/doctest.h>

#include <string>

using namespace dl::ping;

namespace {
std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
std::string attr(const std::string& s, const std::string& element_id, const std::string& name) {
  auto e = s.find("id=\"" + element_id + "\"");
  if (e == std::string::npos) return {};
  auto a = s.find(name + "=\"", e);
  if (a == std::string::npos) return {};
  a += name.size() + 2;
  return s.substr(a, s.find('"', a) - a);
}
}  // namespace

TEST_CASE("nice ticks") {
  auto t = nice_ticks(0, 100);
  REQUIRE(!t.empty());
  CHECK(t.front() == 0);
  CHECK(t.back() == 100);
  CHECK(t.size() == 6);  // step 20
  CHECK(nice_ticks(0, 0.07).size() >= 4);
  CHECK(nice_ticks(5, 5).size() == 1);
}

TEST_CASE("every sample of a short series is a point; axes, labels, markers, bars") {
  PlotInput in;
  in.title = "dlping <test> & co";
  Histogram h;
  for (int i = 0; i < 50; ++i) {
    double rtt = 10 + (i % 7);
    in.series.push_back({i * 0.01, rtt});
    h.record(static_cast<std::int64_t>(rtt * 1000));
  }
  in.buckets = h.buckets();
  in.p50_us = h.percentile(50) / 1000.0;
  in.p99_us = h.percentile(99) / 1000.0;
  std::string s = render_svg(in);
  CHECK(s.rfind("<?xml", 0) == 0);
  CHECK(s.find("dlping &lt;test&gt; &amp; co") != std::string::npos);
  CHECK(attr(s, "rtt-series", "data-samples") == "50");
  std::string pts = attr(s, "rtt-series", "points");
  CHECK(count_of(pts, ",") == 50);
  CHECK(s.find("RTT (µs)") != std::string::npos);
  CHECK(s.find("time since the first probe (s)") != std::string::npos);
  CHECK(count_of(s, "class=\"marker\"") == 4);
  CHECK(count_of(s, "class=\"bar\"") >= 2);
  CHECK(s.find("</svg>") != std::string::npos);
}

TEST_CASE("a long series is drawn per pixel column, an empty one still renders") {
  PlotInput in;
  for (int i = 0; i < 100000; ++i) in.series.push_back({i * 1e-4, i == 5000 ? 900.0 : 10.0});
  std::string s = render_svg(in);
  CHECK(attr(s, "rtt-series", "data-samples") == "100000");
  CHECK(count_of(attr(s, "rtt-series", "points"), ",") <= 2 * 800);
  PlotInput empty;
  CHECK(render_svg(empty).find("</svg>") != std::string::npos);
}

TEST_CASE("a wide spread gets a logarithmic histogram axis, a narrow one a linear one") {
  Histogram wide, narrow;
  for (int i = 0; i < 100; ++i) {
    wide.record(10'000 + i * 50'000);  // 10 us .. 5 ms
    narrow.record(10'000 + i * 10);
  }
  PlotInput a, b;
  a.buckets = wide.buckets();
  a.p99_us = wide.percentile(99) / 1000.0;
  b.buckets = narrow.buckets();
  b.p99_us = narrow.percentile(99) / 1000.0;
  std::string sa = render_svg(a), sb = render_svg(b);
  CHECK(sa.find("RTT (µs), logarithmic") != std::string::npos);
  CHECK(sb.find("logarithmic") == std::string::npos);
  CHECK(sa.find(">1000<") != std::string::npos);  // a decade tick
  CHECK(count_of(sa, "class=\"bar\"") >= 10);
}
