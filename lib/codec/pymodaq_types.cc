#include "lib/codec/pymodaq_types.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace dl::pymodaq {

std::string_view Dialect::query_command() const {
  if (gen == Generation::v1 || (gen == Generation::v2 && !new_query_name)) return "check_position";
  return "get_actuator_value";
}

std::string Dialect::name() const {
  switch (gen) {
    case Generation::v1: return "v1";
    case Generation::v2: return new_query_name ? "v2" : "v2-3.6.2";
    case Generation::v4:
      switch (v4_minor) {
        case 410: return "v4-4.1.0";
        case 413: return "v4-4.1.3";
        case 420: return "v4-4.2";
        default: return "v4";
      }
    case Generation::v5: return "v5";
  }
  return "v4";
}

namespace {

// "4.1.3" -> {4,1,3}; missing parts are 0. False on anything else.
bool parse_version(std::string_view t, int out[3]) {
  out[0] = out[1] = out[2] = 0;
  int part = 0;
  bool digit = false;
  for (char c : t) {
    if (c >= '0' && c <= '9') {
      if (out[part] > 10000) return false;
      out[part] = out[part] * 10 + (c - '0');
      digit = true;
    } else if (c == '.' && digit && part < 2) {
      ++part;
      digit = false;
    } else {
      return false;
    }
  }
  return digit;
}

}  // namespace

Result<Dialect> parse_dialect(std::string_view text) {
  Dialect d;
  if (text == "v1") return Dialect{Generation::v1, 440, false};
  if (text == "v2") return Dialect{Generation::v2, 440, true};
  if (text == "v4") return Dialect{Generation::v4, 440, true};
  if (text == "v5") return Dialect{Generation::v5, 440, true};
  std::string_view t = text;
  if (!t.empty() && (t[0] == 'v' || t[0] == 'V')) t.remove_prefix(1);
  if (t.size() > 2 && t[1] == '-') t.remove_prefix(2);  // our own names: "v4-4.1.0", "v2-3.6.2"
  int v[3];
  if (!parse_version(t, v)) {
    return make_error(ErrorKind::usage, "--dialect " + std::string(text),
                      "expected v1, v2, v4, v5 or a PyMoDAQ version such as 4.2.1");
  }
  auto at_least = [&](int a, int b, int c) {
    return v[0] != a ? v[0] > a : v[1] != b ? v[1] > b : v[2] >= c;
  };
  if (!at_least(1, 6, 0) || v[0] > 5) {
    return make_error(ErrorKind::usage, "--dialect " + std::string(text),
                      "PyMoDAQ speaks TCP/IP from 1.6.0 to 5.0.x");
  }
  if (!at_least(2, 0, 1)) return Dialect{Generation::v1, 440, false};
  if (!at_least(4, 1, 0)) return Dialect{Generation::v2, 440, at_least(3, 6, 3)};
  if (v[0] == 4) {
    d.gen = Generation::v4;
    d.v4_minor = at_least(4, 4, 0) ? 440 : at_least(4, 2, 0) ? 420 : at_least(4, 1, 3) ? 413 : 410;
    return d;
  }
  return Dialect{Generation::v5, 440, true};
}

bool DType::big_endian() const {
  if (order == '>') return true;
  if (order == '<') return false;
  return std::endian::native == std::endian::big;  // '=' native, '|' one-byte
}

Result<DType> parse_dtype(std::string_view t) {
  auto bad = [&](const char* why) {
    return protocol_error("bad-dtype", "dtype '" + std::string(t.substr(0, 32)) + "'", why, false);
  };
  DType d;
  if (t.size() < 2) return bad("too short");
  std::size_t i = 0;
  if (t[0] == '<' || t[0] == '>' || t[0] == '|' || t[0] == '=') {
    d.order = t[0];
    i = 1;
  } else {
    d.order = '=';
  }
  if (i >= t.size()) return bad("no kind");
  d.kind = t[i++];
  if (std::strchr("biufcSUVMm", d.kind) == nullptr || d.kind == 0) return bad("unknown kind");
  std::size_t n = 0;
  std::size_t digits = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    n = n * 10 + static_cast<std::size_t>(t[i++] - '0');
    if (++digits > 9) return bad("item size too large");
  }
  if (digits == 0) return bad("no item size");
  if (i < t.size()) {
    // Only datetime units may follow: "<M8[ns]".
    if ((d.kind != 'M' && d.kind != 'm') || t[i] != '[' || t.back() != ']') return bad("trailing characters");
  }
  if (d.kind == 'U') n *= 4;
  if (d.numeric()) {
    bool ok = d.kind == 'b'   ? n == 1
              : d.kind == 'f' ? (n == 2 || n == 4 || n == 8 || n == 16)
              : d.kind == 'c' ? (n == 8 || n == 16 || n == 32)
                              : (n == 1 || n == 2 || n == 4 || n == 8);
    if (!ok) return bad("unsupported item size");
  }
  if (n == 0 && d.kind != 'S' && d.kind != 'U' && d.kind != 'V') return bad("zero item size");
  d.itemsize = n;
  return d;
}

std::size_t Array::elements() const {
  std::size_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

namespace {

std::uint64_t load_uint(const std::uint8_t* p, std::size_t n, bool big) {
  std::uint64_t v = 0;
  if (big) {
    for (std::size_t k = 0; k < n; ++k) v = (v << 8) | p[k];
  } else {
    for (std::size_t k = n; k-- > 0;) v = (v << 8) | p[k];
  }
  return v;
}

void store_uint(std::uint8_t* p, std::size_t n, bool big, std::uint64_t v) {
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t at = big ? n - 1 - k : k;
    p[at] = static_cast<std::uint8_t>(v >> (8 * k));
  }
}

double half_to_double(std::uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double s = (h & 0x8000) ? -1 : 1;
  if (e == 0) return s * std::ldexp(m, -24);
  if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : s * INFINITY;
  return s * std::ldexp(m + 1024, e - 25);
}

std::uint16_t double_to_half(double v) {
  float f = static_cast<float>(v);
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  std::uint16_t sign = (x >> 16) & 0x8000;
  int e = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  std::uint32_t m = x & 0x7fffff;
  if (std::isnan(f)) return 0x7e00;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    return sign | static_cast<std::uint16_t>(m >> (14 - e));
  }
  return sign | static_cast<std::uint16_t>(e << 10) | static_cast<std::uint16_t>(m >> 13);
}

double element(const std::uint8_t* p, const DType& dt) {
  bool big = dt.big_endian();
  switch (dt.kind) {
    case 'b': return p[0] ? 1 : 0;
    case 'u': return static_cast<double>(load_uint(p, dt.itemsize, big));
    case 'i': {
      std::uint64_t u = load_uint(p, dt.itemsize, big);
      int shift = 64 - 8 * static_cast<int>(dt.itemsize);
      return static_cast<double>(static_cast<std::int64_t>(u << shift) >> shift);
    }
    case 'f':
    case 'c': {
      std::size_t n = dt.kind == 'c' ? dt.itemsize / 2 : dt.itemsize;
      if (n == 2) return half_to_double(static_cast<std::uint16_t>(load_uint(p, 2, big)));
      if (n == 4) return std::bit_cast<float>(static_cast<std::uint32_t>(load_uint(p, 4, big)));
      if (n == 8) return std::bit_cast<double>(load_uint(p, 8, big));
      return std::numeric_limits<double>::quiet_NaN();  // long double: not portable
    }
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

void put_element(std::uint8_t* p, const DType& dt, double v) {
  bool big = dt.big_endian();
  std::memset(p, 0, dt.itemsize);
  switch (dt.kind) {
    case 'b': p[0] = v != 0 && !std::isnan(v); return;
    case 'u': {
      double hi = std::ldexp(1.0, 8 * static_cast<int>(dt.itemsize)) - 1;
      double r = std::isnan(v) ? 0 : std::round(std::min(std::max(v, 0.0), hi));
      store_uint(p, dt.itemsize, big, r >= 1.8446744073709552e19 ? ~0ull : static_cast<std::uint64_t>(r));
      return;
    }
    case 'i': {
      double hi = std::ldexp(1.0, 8 * static_cast<int>(dt.itemsize) - 1);
      double r = std::isnan(v) ? 0 : std::round(std::min(std::max(v, -hi), hi - 1));
      std::int64_t s = r >= 9.2233720368547758e18 ? INT64_MAX : static_cast<std::int64_t>(r);
      store_uint(p, dt.itemsize, big, static_cast<std::uint64_t>(s));
      return;
    }
    case 'f':
    case 'c': {
      std::size_t n = dt.kind == 'c' ? dt.itemsize / 2 : dt.itemsize;
      if (n == 2) store_uint(p, 2, big, double_to_half(v));
      if (n == 4) store_uint(p, 4, big, std::bit_cast<std::uint32_t>(static_cast<float>(v)));
      if (n == 8) store_uint(p, 8, big, std::bit_cast<std::uint64_t>(v));
      return;
    }
    default: return;
  }
}

}  // namespace

double Array::at(std::size_t i, const DType& dt) const {
  if (!dt.numeric() || (i + 1) * dt.itemsize > bytes.size()) return std::numeric_limits<double>::quiet_NaN();
  return element(reinterpret_cast<const std::uint8_t*>(bytes.data()) + i * dt.itemsize, dt);
}

Array make_array(std::string_view dtype, std::vector<std::uint32_t> shape, const double* values) {
  Array a;
  a.dtype = std::string(dtype);
  a.shape = std::move(shape);
  auto dt = parse_dtype(dtype);
  if (!dt) return a;
  std::size_t n = a.elements();
  if (dt->kind == 'f' && dt->itemsize == 8 && !dt->big_endian()) {
    // The common case (and the benchmark's): one copy, no zero-filling first.
    a.bytes.assign(reinterpret_cast<const char*>(values), n * 8);
    return a;
  }
  a.bytes.resize(n * dt->itemsize);
  auto* p = reinterpret_cast<std::uint8_t*>(a.bytes.data());
  for (std::size_t i = 0; i < n; ++i) put_element(p + i * dt->itemsize, *dt, values[i]);
  return a;
}

double Scalar::as_double() const {
  auto dt = parse_dtype(dtype);
  if (!dt || !dt->numeric() || bytes.size() < dt->itemsize) return std::numeric_limits<double>::quiet_NaN();
  return element(reinterpret_cast<const std::uint8_t*>(bytes.data()), *dt);
}

Scalar f8_scalar(double v) {
  Scalar s{"<f8", std::string(8, '\0')};
  put_element(reinterpret_cast<std::uint8_t*>(s.bytes.data()), DType{'<', 'f', 8}, v);
  return s;
}

Scalar i8_scalar(std::int64_t v) {
  Scalar s{"<i8", std::string(8, '\0')};
  store_uint(reinterpret_cast<std::uint8_t*>(s.bytes.data()), 8, false, static_cast<std::uint64_t>(v));
  return s;
}

std::string_view dim_name(std::size_t ndim, std::size_t elements) {
  if (ndim <= 1 && elements <= 1) return "Data0D";
  if (ndim <= 1) return "Data1D";
  if (ndim == 2) return "Data2D";
  return "DataND";
}

Payload payload_of(std::string_view c, const Dialect& d) {
  if (c == "GRABBER" || c == "ACTUATOR" || c == "Send Data 0D" || c == "Send Data 1D" ||
      c == "Send Data 2D" || c == "Send Data ND" || c == "move_home" || c == "check_position" ||
      c == "get_actuator_value" || c == "stop_motion" || c == "Quit") {
    return Payload::none;
  }
  if (c == "Done") return Payload::data;
  if (c == "move_abs" || c == "move_rel" || c == "position_is" || c == "move_done") return Payload::position;
  if (c == "set_info" || c == "Info_xml") return Payload::path_xml;
  if (c == "Infos") return Payload::xml;
  if (c == "Info") return Payload::info;
  if ((c == "x_axis" || c == "y_axis") && (d.gen == Generation::v1 || d.gen == Generation::v2)) return Payload::axis;
  return Payload::unknown;
}

Message command_message(std::string command) {
  Message m;
  m.command = std::move(command);
  return m;
}

Message position_message(std::string command, double value, std::string units, double timestamp) {
  Message m = command_message(std::move(command));
  Dwa a;
  a.cls = "DataActuator";
  a.timestamp = timestamp;
  a.name = "actuator";
  a.units = std::move(units);
  a.dim = "Data0D";
  a.data.push_back(make_array("<f8", {1}, &value));
  a.labels = {"CH00"};
  m.position = std::move(a);
  return m;
}

double position_value(const Message& m) {
  if (!m.position || m.position->data.empty()) return std::numeric_limits<double>::quiet_NaN();
  const Array& a = m.position->data[0];
  auto dt = parse_dtype(a.dtype);
  if (!dt) return std::numeric_limits<double>::quiet_NaN();
  return a.at(0, *dt);
}

}  // namespace dl::pymodaq
