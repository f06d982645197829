#include "lib/pymodaq/synth.h"

#include <fmt/format.h>

#include <cmath>
#include <random>

namespace dl::pymodaq {

Result<std::vector<std::uint32_t>> parse_shape(std::string_view text, std::string_view flag) {
  std::vector<std::uint32_t> shape;
  auto bad = [&](const char* why) {
    return make_error(ErrorKind::usage, std::string(flag) + " " + std::string(text), why);
  };
  std::size_t i = 0;
  while (i <= text.size()) {
    std::size_t j = text.find_first_of("x,", i);
    if (j == std::string_view::npos) j = text.size();
    std::string_view part = text.substr(i, j - i);
    if (part.empty() || part.size() > 10) return bad("expected dimensions like 512x512");
    std::uint64_t v = 0;
    for (char c : part) {
      if (c < '0' || c > '9') return bad("expected dimensions like 512x512");
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v == 0 || v > (1u << 31)) return bad("each dimension must be 1 to 2^31");
    shape.push_back(static_cast<std::uint32_t>(v));
    i = j + 1;
  }
  if (shape.size() > 8) return bad("at most 8 dimensions");
  std::uint64_t n = 1;
  for (auto s : shape) {
    n *= s;
    if (n > (1ull << 31)) return bad("too many elements");
  }
  return shape;
}

Synth::Synth(SynthConfig c) : config_(std::move(c)) {
  std::mt19937_64 rng(config_.seed);
  std::normal_distribution<double> g(0, 1);
  noise_.resize(1 << 16);
  for (auto& x : noise_) x = g(rng);
  draw_ = rng();
}

double Synth::amplitude() const {
  auto dt = parse_dtype(config_.dtype);
  if (!dt) return 1;
  switch (dt->kind) {
    case 'u': return dt->itemsize == 1 ? 200 : 1000;
    case 'i': return dt->itemsize == 1 ? 100 : 1000;
    case 'b': return 1;
    default: return 1;
  }
}

double Synth::offset() const {
  auto dt = parse_dtype(config_.dtype);
  return dt && dt->kind == 'u' ? 0.1 * amplitude() : 0;  // keep unsigned noise above zero
}

Dte Synth::frame(std::string_view dim, double t, double timestamp, const std::string& name) {
  const double kTwoPi = 6.283185307179586;
  const double A = amplitude(), off = offset(), noise = config_.noise * A;
  std::vector<std::uint32_t> shape;
  if (dim == "0D") shape = {1};
  else if (dim == "1D") shape = config_.shape_1d;
  else if (dim == "ND") shape = config_.shape_nd;
  else shape = config_.shape_2d;
  std::size_t n = 1;
  for (auto s : shape) n *= s;
  buf_.resize(n);
  std::size_t rows = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  std::size_t cols = shape.back();
  std::size_t planes = n / (rows * cols);

  Dwa w;
  w.cls = "DataRaw";  // as in the data PyMoDAQ itself encoded (testdata/pymodaq)
  w.timestamp = timestamp;
  w.name = name;
  w.origin = name;
  w.dim = dim == "0D" ? "Data0D" : dim == "1D" ? "Data1D" : dim == "ND" ? "DataND" : "Data2D";
  for (int ch = 0; ch < config_.channels; ++ch) {
    double phase = kTwoPi * t / config_.period_s + ch * kTwoPi / 4;
    std::size_t k = static_cast<std::size_t>((draw_ += 0x9e3779b97f4a7c15ull) >> 48);
    const std::size_t mask = noise_.size() - 1;
    if (shape.size() == 1 && n == 1) {
      buf_[0] = off + A * (0.6 + 0.4 * std::sin(phase)) + noise * noise_[k & mask];
    } else {
      // Separable Gaussian: the spot is gy[r] * gx[c], so a frame is one multiply per pixel.
      double cx = cols / 2.0 + cols / 4.0 * std::cos(phase);
      double cy = rows / 2.0 + rows / 4.0 * std::sin(phase);
      double sx = std::max(1.0, cols / 12.0), sy = std::max(1.0, rows / 12.0);
      gx_.resize(cols);
      gy_.resize(rows);
      for (std::size_t c = 0; c < cols; ++c) gx_[c] = A * std::exp(-0.5 * std::pow((c - cx) / sx, 2));
      for (std::size_t r = 0; r < rows; ++r) gy_[r] = rows == 1 ? 1.0 : std::exp(-0.5 * std::pow((r - cy) / sy, 2));
      std::size_t i = 0;
      for (std::size_t p = 0; p < planes; ++p) {
        double pw = planes == 1 ? 1.0 : 0.5 + 0.5 * std::cos(kTwoPi * p / planes + phase);
        for (std::size_t r = 0; r < rows; ++r) {
          double gr = gy_[r] * pw;
          for (std::size_t c = 0; c < cols; ++c, ++i) buf_[i] = off + gr * gx_[c] + noise * noise_[(k + i) & mask];
        }
      }
    }
    w.data.push_back(make_array(config_.dtype, shape, buf_.data()));
    w.labels.push_back(fmt::format("CH{:02}", ch));
  }
  Dte d;
  d.timestamp = timestamp;
  d.name = name;
  d.data.push_back(std::move(w));
  return d;
}

}  // namespace dl::pymodaq
