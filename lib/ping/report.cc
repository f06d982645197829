#include "lib/ping/report.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

namespace dl::ping {

std::string fmt_ns(double ns) {
  double a = std::fabs(ns);
  if (a < 1000) return fmt::format("{:.0f} ns", ns);
  if (a < 10e3) return fmt::format("{:.2f} us", ns / 1e3);
  if (a < 1e6) return fmt::format("{:.1f} us", ns / 1e3);
  if (a < 1e9) return fmt::format("{:.2f} ms", ns / 1e6);
  return fmt::format("{:.3f} s", ns / 1e9);
}

namespace {

// Several values in one unit chosen by the first: "10.1/12.3/40.2 us".
std::string slash(std::initializer_list<double> v) {
  double ref = std::fabs(*v.begin());
  double div = 1;
  const char* unit = "ns";
  int prec = 0;
  if (ref >= 1e9) {
    div = 1e9, unit = "s", prec = 3;
  } else if (ref >= 1e6) {
    div = 1e6, unit = "ms", prec = 2;
  } else if (ref >= 1e3) {
    div = 1e3, unit = "us", prec = ref >= 1e5 ? 0 : ref >= 1e4 ? 1 : 2;
  }
  std::string out;
  for (double x : v) {
    if (!out.empty()) out += '/';
    out += fmt::format("{:.{}f}", x / div, prec);
  }
  return out + " " + unit;
}

std::string pct(std::uint64_t part, std::uint64_t whole) {
  return whole ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "0%";
}

std::string latency_lines(const char* name, const LatencyStats& s) {
  const auto& m = s.moments();
  const auto& h = s.histogram();
  std::string o = fmt::format("{} min/mean/max/stddev = {}\n", name, slash({m.min(), m.mean(), m.max(), m.stddev()}));
  o += fmt::format("{} p50/p90/p99/p99.9/p99.99 = {}\n", name,
                   slash({static_cast<double>(h.percentile(50)), static_cast<double>(h.percentile(90)),
                          static_cast<double>(h.percentile(99)), static_cast<double>(h.percentile(99.9)),
                          static_cast<double>(h.percentile(99.99))}));
  return o;
}

}  // namespace

std::string probe_line(const std::string& target, std::uint32_t wire_bytes, std::uint64_t seq,
                       std::int64_t rtt_ns, std::int64_t raw_ns, std::int64_t turnaround_ns,
                       bool has_turnaround, bool late) {
  std::string o = fmt::format("{} bytes from {}: seq={} rtt={}", wire_bytes, target, seq,
                              fmt_ns(static_cast<double>(rtt_ns)));
  if (has_turnaround) {
    o += fmt::format(" (raw {}, turnaround {})", fmt_ns(static_cast<double>(raw_ns)),
                     fmt_ns(static_cast<double>(turnaround_ns)));
  } else {
    o += " (responder turnaround included: the peer stamps nothing)";
  }
  if (late) o += " LATE";
  return o;
}

std::string terminal_histogram(const Histogram& h, int rows, int width) {
  if (h.count() == 0) return "";
  // Rows span min..p99 in equal steps (the tail beyond goes into the last row, marked +).
  double lo = static_cast<double>(h.min());
  double hi = static_cast<double>(std::max(h.percentile(99), h.min() + 1));
  std::vector<std::uint64_t> c(rows, 0);
  for (const auto& b : h.buckets()) {
    double mid = (static_cast<double>(b.low) + static_cast<double>(b.high)) / 2;
    int r = static_cast<int>((mid - lo) / (hi - lo) * rows);
    c[std::clamp(r, 0, rows - 1)] += b.count;
  }
  std::uint64_t cmax = *std::max_element(c.begin(), c.end());
  std::string o;
  for (int r = 0; r < rows; ++r) {
    double from = lo + (hi - lo) * r / rows;
    int n = cmax ? static_cast<int>(std::lround(static_cast<double>(c[r]) * width / static_cast<double>(cmax))) : 0;
    if (c[r] > 0 && n == 0) n = 1;
    o += fmt::format("{:>10}{} |{:<{}}| {}\n", fmt_ns(from), r == rows - 1 ? "+" : " ", std::string(n, '#'),
                     width, c[r]);
  }
  return o;
}

std::string text_summary(const RunFigures& run, bool histogram) {
  std::string o;
  for (const auto& p : run.phases) {
    o += fmt::format("--- {} {} statistics ({} over {}, {}-byte probes) ---\n", run.target, run.program,
                     run.proto, run.transport, p.wire_bytes);
    o += fmt::format("{} sent, {} received, {} lost ({}), {} duplicated, {} out of order, {} timed out",
                     p.sent, p.received, p.lost, pct(p.lost, p.sent), p.duplicated, p.out_of_order, p.timeouts);
    if (p.late) o += fmt::format(" ({} answered late)", p.late);
    o += fmt::format(", time {}\n", fmt_ns(p.duration_s * 1e9));
    if (run.setup_s >= 0 && &p == &run.phases.front()) {
      o += fmt::format("connection set-up {} (not counted in the figures below)\n", fmt_ns(run.setup_s * 1e9));
    }
    if (p.rtt.count() == 0) continue;
    const char* name = p.has_turnaround ? "rtt" : "rtt (turnaround included)";
    o += latency_lines(name, p.rtt);
    o += fmt::format("percentiles from a histogram with relative error <= {:.2f}%\n", Histogram::kRelativeError * 100);
    o += fmt::format("jitter: stddev {}, RFC 3550 interarrival {}\n", fmt_ns(p.rtt.moments().stddev()),
                     fmt_ns(p.rtt.jitter_rfc3550()));
    if (p.has_turnaround) {
      o += fmt::format("raw round trip mean {} (responder turnaround mean {}, removed above)\n",
                       fmt_ns(p.raw.moments().mean()), fmt_ns(p.turnaround.moments().mean()));
    }
    o += fmt::format("RTT/2 (not one-way delay: that needs synchronised clocks) p50 {}, mean {}\n",
                     fmt_ns(static_cast<double>(p.rtt.histogram().percentile(50)) / 2), fmt_ns(p.rtt.moments().mean() / 2));
    if (p.has_fastsocket && p.fastsocket.count() > 0) {
      const auto& f = p.fastsocket;
      o += fmt::format("fastSocket's formula T1 - T2/2 would print: mean {}, p50 {}, min {}, max {}, {} negative\n",
                       fmt_ns(f.moments().mean()), fmt_ns(static_cast<double>(f.histogram().percentile(50))),
                       fmt_ns(f.moments().min()), fmt_ns(f.moments().max()), f.negatives());
    }
    o += fmt::format("rate {:.1f} msg/s achieved, longest gap {}", p.rate.achieved_rate(),
                     fmt_ns(static_cast<double>(p.rate.longest_gap_ns())));
    if (p.rate.min_rate() > 0) {
      o += fmt::format(", {} of {} intervals below --min-rate {:g}/s", p.rate.below_min_rate(), p.rate.intervals(),
                       p.rate.min_rate());
    }
    o += "\n";
    if (histogram) o += terminal_histogram(p.rtt.histogram());
  }
  if (run.phases.size() > 1) {
    o += fmt::format("--- size sweep: rtt by probe size ---\n{:>10} {:>8} {:>12} {:>12} {:>12} {:>6}\n", "bytes",
                     "count", "p50", "p99", "mean", "lost");
    for (const auto& p : run.phases) {
      o += fmt::format("{:>10} {:>8} {:>12} {:>12} {:>12} {:>6}\n", p.wire_bytes, p.rtt.count(),
                       fmt_ns(static_cast<double>(p.rtt.histogram().percentile(50))),
                       fmt_ns(static_cast<double>(p.rtt.histogram().percentile(99))), fmt_ns(p.rtt.moments().mean()),
                       p.lost);
    }
  }
  return o;
}

namespace {
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
    } else {
      o += c;
    }
  }
  return o + "\"";
}
std::string jnum(double v) { return std::isfinite(v) ? fmt::format("{:.15g}", v) : "null"; }
}  // namespace

std::string json_latency(const LatencyStats& s) {
  const auto& m = s.moments();
  const auto& h = s.histogram();
  return fmt::format(
      "{{\"count\": {}, \"min\": {}, \"mean\": {}, \"stddev\": {}, \"max\": {}, \"p50\": {}, \"p90\": {}, "
      "\"p99\": {}, \"p99_9\": {}, \"p99_99\": {}, \"jitter_stddev\": {}, \"jitter_rfc3550\": {}, \"negative\": {}}}",
      m.count(), jnum(m.min()), jnum(m.mean()), jnum(m.stddev()), jnum(m.max()), h.percentile(50), h.percentile(90),
      h.percentile(99), h.percentile(99.9), h.percentile(99.99), jnum(m.stddev()), jnum(s.jitter_rfc3550()),
      s.negatives());
}

std::string json_summary(const RunFigures& run) {
  std::string o = fmt::format("{{\"program\": {}, \"target\": {}, \"proto\": {}, \"transport\": {}, \"unit\": \"ns\", ",
                              jstr(run.program), jstr(run.target), jstr(run.proto), jstr(run.transport));
  o += fmt::format("\"setup_ns\": {}, \"histogram_relative_error\": {}, \"phases\": [",
                   run.setup_s >= 0 ? jnum(run.setup_s * 1e9) : "null", jnum(Histogram::kRelativeError));
  bool first = true;
  for (const auto& p : run.phases) {
    if (!first) o += ", ";
    first = false;
    o += fmt::format("{{\"size\": {}, \"wire_bytes\": {}, \"sent\": {}, \"received\": {}, \"lost\": {}, "
                     "\"duplicated\": {}, \"out_of_order\": {}, \"timeouts\": {}, \"late\": {}, \"unknown\": {}, "
                     "\"duration_s\": {}, ",
                     p.size, p.wire_bytes, p.sent, p.received, p.lost, p.duplicated, p.out_of_order, p.timeouts, p.late,
                     p.unknown, jnum(p.duration_s));
    o += fmt::format("\"turnaround_removed\": {}, \"rtt\": {}, \"rtt_half_p50\": {}, \"raw\": {}, ",
                     p.has_turnaround ? "true" : "false", json_latency(p.rtt),
                     jnum(static_cast<double>(p.rtt.histogram().percentile(50)) / 2), json_latency(p.raw));
    if (p.has_turnaround) o += fmt::format("\"turnaround\": {}, ", json_latency(p.turnaround));
    if (p.has_fastsocket) o += fmt::format("\"fastsocket_formula\": {}, ", json_latency(p.fastsocket));
    o += fmt::format("\"rate\": {{\"achieved\": {}, \"longest_gap_ns\": {}, \"intervals\": {}, \"min_rate\": {}, "
                     "\"below_min_rate\": {}}}, ",
                     jnum(p.rate.achieved_rate()), p.rate.longest_gap_ns(), p.rate.intervals(),
                     jnum(p.rate.min_rate()), p.rate.below_min_rate());
    o += "\"histogram\": [";
    bool fb = true;
    for (const auto& b : p.rtt.histogram().buckets()) {
      if (!fb) o += ", ";
      fb = false;
      o += fmt::format("[{}, {}, {}]", b.low, b.high, b.count);
    }
    o += "]}";
  }
  o += "]}\n";
  return o;
}

}  // namespace dl::ping
