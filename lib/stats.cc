#include "lib/stats.h"

#include <fmt/format.h>

namespace dl {

std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", bytes, units[u]) : fmt::format("{:.2f} {}", bytes, units[u]);
}

std::string human_rate(double bytes, double seconds) {
  if (seconds <= 0) return "- bit/s";
  double bits = bytes * 8 / seconds;
  if (bits >= 1e9) return fmt::format("{:.2f} Gbit/s", bits / 1e9);
  if (bits >= 1e6) return fmt::format("{:.1f} Mbit/s", bits / 1e6);
  if (bits >= 1e3) return fmt::format("{:.1f} kbit/s", bits / 1e3);
  return fmt::format("{:.0f} bit/s", bits);
}

}  // namespace dl
