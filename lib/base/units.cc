#include "lib/base/units.h"

#include <charconv>
#include <cmath>
#include <fmt/format.h>

namespace dl {

namespace {

Error bad(std::string_view flag, std::string_view text, std::string_view expected) {
  std::string ctx(flag);
  ctx += " '";
  ctx += text;
  ctx += "'";
  return make_error(ErrorKind::usage, std::move(ctx), std::string(expected));
}

// Splits "12.5M" into 12.5 and "M"; false on no number.
bool number_and_suffix(std::string_view text, double& value, std::string_view& suffix) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc()) return false;
  suffix = std::string_view(end, static_cast<std::size_t>(text.data() + text.size() - end));
  return true;
}

}  // namespace

Result<std::uint64_t> parse_size(std::string_view text, std::string_view flag) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  std::string_view rest(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t mult = 1;
  if (rest.empty() || rest == "B") mult = 1;
  else if (rest == "K" || rest == "k" || rest == "KiB") mult = 1ull << 10;
  else if (rest == "M" || rest == "m" || rest == "MiB") mult = 1ull << 20;
  else if (rest == "G" || rest == "g" || rest == "GiB") mult = 1ull << 30;
  else if (rest == "T" || rest == "t" || rest == "TiB") mult = 1ull << 40;
  else ec = std::errc::invalid_argument;
  if (ec != std::errc() || text.empty() || v > (UINT64_MAX / mult)) {
    return bad(flag, text, "expected a size such as 65536, 64K or 16M");
  }
  return v * mult;
}

Result<double> parse_rate_bits(std::string_view text, std::string_view flag) {
  double v = 0;
  std::string_view suffix;
  if (!number_and_suffix(text, v, suffix)) return bad(flag, text, "expected a rate such as 800k, 200M or 1.5G (bits per second)");
  if (suffix.ends_with("bit/s")) suffix.remove_suffix(5);
  else if (suffix.ends_with("bps")) suffix.remove_suffix(3);
  double mult = 1;
  if (suffix.empty()) mult = 1;
  else if (suffix == "k" || suffix == "K") mult = 1e3;
  else if (suffix == "M" || suffix == "m") mult = 1e6;
  else if (suffix == "G" || suffix == "g") mult = 1e9;
  else if (suffix == "T" || suffix == "t") mult = 1e12;
  else return bad(flag, text, "expected a rate such as 800k, 200M or 1.5G (bits per second)");
  double r = v * mult;
  if (!std::isfinite(r) || r <= 0) return bad(flag, text, "a rate must be positive and finite");
  return r;
}

Result<double> parse_duration(std::string_view text, std::string_view flag) {
  if (text == "inf" || text == "forever" || text == "infinity") return HUGE_VAL;
  double v = 0;
  std::string_view suffix;
  if (!number_and_suffix(text, v, suffix)) return bad(flag, text, "expected a duration such as 2.5, 500ms, 10s, 5m or inf");
  double mult = 1;
  if (suffix.empty() || suffix == "s") mult = 1;
  else if (suffix == "ms") mult = 1e-3;
  else if (suffix == "us") mult = 1e-6;
  else if (suffix == "m" || suffix == "min") mult = 60;
  else if (suffix == "h") mult = 3600;
  else return bad(flag, text, "expected a duration such as 2.5, 500ms, 10s, 5m or inf");
  double s = v * mult;
  if (std::isnan(s)) return bad(flag, text, "not a number");
  if (s < 0) return bad(flag, text, "a duration cannot be negative");
  if (std::isinf(s) || s > 3.15e9) return bad(flag, text, "too long: say inf for no limit");
  return s;
}

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

std::string human_duration(double seconds) {
  if (std::isinf(seconds)) return "forever";
  if (seconds < 1e-3) return fmt::format("{:.0f} us", seconds * 1e6);
  if (seconds < 1) return fmt::format("{:.1f} ms", seconds * 1e3);
  if (seconds < 10) return fmt::format("{:.2f} s", seconds);
  return fmt::format("{:.1f} s", seconds);
}

}  // namespace dl
