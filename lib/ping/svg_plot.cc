#include "lib/ping/svg_plot.h"

#include "lib/base/xml_escape.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

namespace dl::ping {

namespace {

constexpr double kW = 900, kH = 680;
constexpr double kLeft = 80, kRight = 870;
constexpr double kTop1 = 50, kBottom1 = 330;   // time series panel
constexpr double kTop2 = 410, kBottom2 = 620;  // histogram panel

std::string num(double v) {
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.3g}", v);
  std::string s = fmt::format("{:.3f}", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// Three significant digits: "24.2", "580", "1250".
std::string num3(double v) {
  if (v >= 1000) return fmt::format("{:.0f}", v);
  return num(std::stod(fmt::format("{:.3g}", v)));
}

struct Axis {
  double lo, hi, px_lo, px_hi;
  bool log = false;  // logarithmic (lo > 0)
  double map(double v) const {
    if (hi <= lo) return px_lo;
    if (log) {
      v = std::max(v, lo);
      return px_lo + (std::log(v) - std::log(lo)) / (std::log(hi) - std::log(lo)) * (px_hi - px_lo);
    }
    return px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo);
  }
  std::vector<double> ticks() const {
    if (!log) return nice_ticks(lo, hi);
    // 1, 2, 5 per decade when few decades, else the decades alone.
    std::vector<double> t;
    bool dense = hi / lo < 1e3;
    for (double d = std::pow(10.0, std::floor(std::log10(lo))); d <= hi; d *= 10) {
      for (double m : {1.0, 2.0, 5.0}) {
        if (!dense && m != 1.0) continue;
        double v = d * m;
        if (v >= lo * 0.999 && v <= hi * 1.001) t.push_back(v);
      }
    }
    return t;
  }
};

void axes(std::string& o, const Axis& x, const Axis& y, double top, double bottom,
          const std::string& xlabel, const std::string& ylabel) {
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n",
                   kLeft, top, kRight - kLeft, bottom - top);
  for (double t : x.ticks()) {
    double px = x.map(t);
    o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#444\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                     px, bottom, bottom + 5, bottom + 18, num(t));
  }
  for (double t : y.ticks()) {
    double py = y.map(t);
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                     "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                     kLeft, py, kRight, kLeft - 6, py + 4, num(t));
  }
  o += fmt::format("<text class=\"xlabel\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                   (kLeft + kRight) / 2, bottom + 38, xml_escape(xlabel));
  o += fmt::format("<text class=\"ylabel\" x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" "
                   "transform=\"rotate(-90 {0} {1})\">{2}</text>\n",
                   22, (top + bottom) / 2, xml_escape(ylabel));
}

void hline(std::string& o, const Axis& y, double v, const char* color, const std::string& label, bool left) {
  if (v < y.lo || v > y.hi) return;
  double py = y.map(v);
  o += fmt::format("<line class=\"marker\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" "
                   "stroke=\"{3}\" stroke-dasharray=\"6 4\"/><text x=\"{4}\" y=\"{5:.1f}\" "
                   "fill=\"{3}\" text-anchor=\"{7}\" stroke=\"white\" stroke-width=\"3\" "
                   "paint-order=\"stroke\">{6}</text>\n",
                   kLeft, py, kRight, color, left ? kLeft + 4 : kRight - 4, py - 4, xml_escape(label),
                   left ? "start" : "end");
}

void vline(std::string& o, const Axis& x, double v, double top, double bottom, const char* color,
           const std::string& label) {
  if (v < x.lo || v > x.hi) return;
  double px = x.map(v);
  o += fmt::format("<line class=\"marker\" x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" "
                   "stroke=\"{3}\" stroke-dasharray=\"6 4\"/><text x=\"{4:.1f}\" y=\"{5}\" "
                   "fill=\"{3}\">{6}</text>\n",
                   px, top, bottom, color, px + 4, top + 14, xml_escape(label));
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> out;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) {
    out.push_back(lo);
    return out;
  }
  double raw = (hi - lo) / std::max(1, target);
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = p;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * p;
    if (step >= raw) break;
  }
  double first = std::ceil(lo / step - 1e-9) * step;
  for (double v = first; v <= hi + step * 1e-9 && out.size() < 100; v += step) {
    out.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

std::string render_svg(const PlotInput& in) {
  std::string o;
  o += fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
                   "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
                   "<text x=\"{2}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">{3}</text>\n",
                   kW, kH, kW / 2, xml_escape(in.title));

  // Time series.
  double tmax = 0, ymax = 0;
  for (auto& p : in.series) {
    tmax = std::max(tmax, p.t_s);
    ymax = std::max(ymax, p.rtt_us);
  }
  if (tmax <= 0) tmax = 1;
  if (ymax <= 0) ymax = 1;
  ymax = nice_ticks(0, ymax * 1.05).back() < ymax * 1.05 ? ymax * 1.05 : nice_ticks(0, ymax * 1.05).back();
  Axis x{0, tmax, kLeft, kRight, false}, y{0, ymax, kBottom1, kTop1, false};
  o += "<g id=\"timeseries\">\n";
  axes(o, x, y, kTop1, kBottom1, "time since the first probe (s)", in.y_label);
  o += fmt::format("<polyline id=\"rtt-series\" data-samples=\"{}\" fill=\"none\" stroke=\"#1f77b4\" "
                   "stroke-width=\"1\" points=\"",
                   in.series.size());
  if (in.series.size() <= 4000) {
    for (auto& p : in.series) o += fmt::format("{:.2f},{:.2f} ", x.map(p.t_s), y.map(p.rtt_us));
  } else {
    // Min and max per pixel column, in time order, so no spike disappears.
    int cols = static_cast<int>(kRight - kLeft);
    std::vector<double> lo(cols, HUGE_VAL), hi(cols, -HUGE_VAL);
    for (auto& p : in.series) {
      int c = std::clamp(static_cast<int>((p.t_s / tmax) * (cols - 1)), 0, cols - 1);
      lo[c] = std::min(lo[c], p.rtt_us);
      hi[c] = std::max(hi[c], p.rtt_us);
    }
    for (int c = 0; c < cols; ++c) {
      if (hi[c] < lo[c]) continue;
      double px = kLeft + c;
      o += fmt::format("{:.1f},{:.2f} {:.1f},{:.2f} ", px, y.map(lo[c]), px, y.map(hi[c]));
    }
  }
  o += "\"/>\n";
  hline(o, y, in.p50_us, "#2ca02c", "p50 " + num3(in.p50_us) + " µs", true);
  hline(o, y, in.p99_us, "#d62728", "p99 " + num3(in.p99_us) + " µs", false);
  o += "</g>\n";

  // Histogram: the log-linear buckets regrouped into 80 bins. When the values spread over
  // more than a factor of 20 the x axis is logarithmic (equal bins in log RTT), so the bulk
  // and the tail both show; otherwise linear from 0 (or up to 4 x p99 when a far outlier would
  // squash everything into one bar).
  o += "<g id=\"histogram\">\n";
  double vmin = HUGE_VAL, vmax = 0;
  std::uint64_t total = 0;
  for (auto& b : in.buckets) {
    vmin = std::min(vmin, std::max(static_cast<double>(b.low), 1.0) / 1000.0);
    vmax = std::max(vmax, static_cast<double>(b.high) / 1000.0);
    total += b.count;
  }
  bool logx = total > 0 && vmax / vmin > 20;
  double xlo = 0;
  if (logx) {
    xlo = std::pow(10.0, std::floor(std::log10(vmin) * 4) / 4);  // a little below, on a round-ish value
  } else if (in.p99_us > 0 && vmax > 4 * in.p99_us) {
    vmax = 4 * in.p99_us;
  }
  if (vmax <= xlo) vmax = xlo + 1;
  const int bins = 80;
  std::vector<std::uint64_t> counts(bins, 0);
  std::uint64_t beyond = 0;
  Axis hx{xlo, vmax, kLeft, kRight, logx};
  for (auto& b : in.buckets) {
    double mid = (static_cast<double>(b.low) + static_cast<double>(b.high)) / 2000.0;
    if (mid > vmax) {
      beyond += b.count;
      continue;
    }
    int k = std::clamp(static_cast<int>((hx.map(mid) - kLeft) / (kRight - kLeft) * bins), 0, bins - 1);
    counts[k] += b.count;
  }
  double cmax = 1;
  for (auto c : counts) cmax = std::max(cmax, static_cast<double>(c));
  double cticks = nice_ticks(0, cmax).back();
  if (cticks < cmax) cticks = cmax;
  Axis hy{0, cticks, kBottom2, kTop2};
  axes(o, hx, hy, kTop2, kBottom2, logx ? in.y_label + ", logarithmic" : in.y_label, "samples");
  double bw = (kRight - kLeft) / bins;
  for (int k = 0; k < bins; ++k) {
    if (counts[k] == 0) continue;
    double top = hy.map(static_cast<double>(counts[k]));
    o += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                     "fill=\"#7fa7d0\" data-count=\"{}\"/>\n",
                     kLeft + k * bw, top, std::max(bw - 1, 1.0), kBottom2 - top, counts[k]);
  }
  vline(o, hx, in.p50_us, kTop2, kBottom2, "#2ca02c", "p50");
  vline(o, hx, in.p99_us, kTop2, kBottom2, "#d62728", "p99");
  if (beyond > 0) {
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} of {} samples beyond {} off the scale</text>\n",
                     kRight, kTop2 - 6, beyond, total, num(vmax));
  }
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace dl::ping
