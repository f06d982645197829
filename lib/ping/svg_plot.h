// svg_plot: renders dlping's latency picture as a standalone SVG document: the RTT of every
// sample over time (top) and the RTT histogram (bottom), with axes, ticks, labels and the p50
// and p99 marked in both. Pure: takes the figures, returns the text; the caller writes the file.
// Long series are drawn as the min and max per pixel column, which keeps every spike visible.
// What this is not: a general plotting library (two fixed panels, one series).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/ping/histogram.h"

namespace dl::ping {

struct PlotPoint {
  double t_s = 0;     // seconds since the first probe
  double rtt_us = 0;  // microseconds
};

struct PlotInput {
  std::string title;     // e.g. "dlping 127.0.0.1:9000, 1000 probes of 64 B"
  std::string y_label = "RTT (µs)";
  std::vector<PlotPoint> series;
  std::vector<Histogram::Bucket> buckets;  // values in ns, as Histogram::buckets() gives them
  double p50_us = 0, p99_us = 0;
};

// The SVG document (UTF-8). The series is one <polyline id="rtt-series"> whose
// data-samples attribute is the number of samples it represents.
std::string render_svg(const PlotInput& in);

// "Nice" axis ticks (1, 2, 5 times a power of ten) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace dl::ping
