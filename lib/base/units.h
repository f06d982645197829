// units: the family's one reading and printing of sizes, rates and durations, so that every
// tool accepts "64K", "200M" and "inf" alike and prints "1.50 GiB" and "12.3 Gbit/s" alike.
// Pure functions; errors are ErrorKind::usage naming the flag and the text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/base/error.h"

namespace dl {

// Sizes: 65536, 64K, 16M, 1G, 2T (binary multiples; KiB/MiB/GiB/TiB too). Overflow refused.
Result<std::uint64_t> parse_size(std::string_view text, std::string_view flag);

// Rates in bits per second, decimal multiples like iperf3: 200M = 200 Mbit/s, 1.5G, 800k.
// 0 is refused (use no flag for "unlimited").
Result<double> parse_rate_bits(std::string_view text, std::string_view flag);

// Durations in seconds: 2.5, 500ms, 10s, 5m, 1h; "inf" or "forever" = +infinity. Negative,
// NaN and garbage are refused; so is anything beyond a century that is not "inf" (it would
// overflow a clock's arithmetic).
Result<double> parse_duration(std::string_view text, std::string_view flag);

// "1.50 GiB", "512 B"
std::string human_bytes(double bytes);
// "12.3 Gbit/s" (bytes over seconds)
std::string human_rate(double bytes, double seconds);
// "2.5 s", "forever", "1.2 ms"
std::string human_duration(double seconds);

}  // namespace dl
