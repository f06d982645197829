// synth: the synthetic detector of the grabber role: a noisy Gaussian peak that moves, so that
// a person watching PyMoDAQ sees a live signal. 0D: the peak's height; 1D: a peak sliding
// along the line; 2D: a spot circling the image; ND: the 2D spot in every plane, drifting.
// Each channel is phase-shifted. Pure: the caller gives the time; noise comes from a seeded
// table so a 512x512 frame costs a few multiplications per pixel, not a random draw.
// It is not: the wire format or the DataToExport layout rules (pymodaq_codec).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"
#include "lib/codec/pymodaq_types.h"

namespace dl::pymodaq {

struct SynthConfig {
  std::string dtype = "<f8";   // any numeric numpy dtype; integers are scaled to their range
  int channels = 1;
  std::vector<std::uint32_t> shape_1d{256};
  std::vector<std::uint32_t> shape_2d{128, 128};
  std::vector<std::uint32_t> shape_nd{4, 64, 64};
  double noise = 0.05;          // relative to the peak height
  double period_s = 10;         // one cycle of the peak's motion
  std::uint64_t seed = 1;
};

// "512x512", "256", "4x32x32": 1 to 8 dimensions, each 1..2^31, total within max_bytes for
// `itemsize`. Errors: usage naming `flag`.
Result<std::vector<std::uint32_t>> parse_shape(std::string_view text, std::string_view flag);

class Synth {
 public:
  explicit Synth(SynthConfig c);
  // One frame for "0D", "1D", "2D" or "ND" at `t` seconds since start; `name` names the
  // DataToExport and its DataRaw (origin too, as a DTE sets it), stamped `timestamp`.
  Dte frame(std::string_view dim, double t, double timestamp, const std::string& name);
  const SynthConfig& config() const { return config_; }

 private:
  double amplitude() const;
  double offset() const;
  SynthConfig config_;
  std::vector<double> noise_;
  std::uint64_t draw_ = 0;
  std::vector<double> buf_, gx_, gy_;
};

}  // namespace dl::pymodaq
