#include "lib/pymodaq/array_input.h"

#include <fmt/format.h>

#include <cstring>
#include <string_view>

#include "lib/pymodaq/synth.h"

namespace dl::pymodaq {

namespace {

constexpr std::size_t kMaxHeaderLine = 256;

ArrayParse bad(std::string id, std::uint64_t at, std::string detail, bool too_large = false) {
  ArrayParse p;
  p.status = ArrayParse::Status::bad;
  p.error = protocol_error(std::move(id), "--data", fmt::format("at byte {}: {}", at, detail), false);
  if (too_large) p.error.kind = ErrorKind::too_large;
  return p;
}

ArrayParse need(std::size_t n) {
  ArrayParse p;
  p.needed = n;
  return p;
}

// Finishes a parse once dtype and shape are known and the header is `header` bytes long.
ArrayParse body(std::span<const std::uint8_t> buf, std::uint64_t offset, std::uint64_t max_bytes,
                std::string dtype, std::vector<std::uint32_t> shape, std::size_t header) {
  auto dt = parse_dtype(dtype);
  if (!dt) return bad("bad-dtype", offset, dt.error().detail + " ('" + dtype.substr(0, 32) + "')");
  std::uint64_t n = dt->itemsize;
  for (auto s : shape) {
    n *= s;
    if (n > max_bytes) break;
  }
  if (n > max_bytes) return bad("too-large", offset, fmt::format("array larger than the {}-byte limit", max_bytes), true);
  if (buf.size() < header + n) return need(header + static_cast<std::size_t>(n));
  ArrayParse p;
  p.status = ArrayParse::Status::array;
  p.array.dtype = std::move(dtype);
  p.array.shape = std::move(shape);
  p.array.bytes.assign(reinterpret_cast<const char*>(buf.data() + header), static_cast<std::size_t>(n));
  p.consumed = header + static_cast<std::size_t>(n);
  return p;
}

// The value of 'key' in numpy's header dict: "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }".
std::string_view dict_value(std::string_view h, std::string_view key) {
  std::string quoted = "'" + std::string(key) + "'";
  std::size_t at = h.find(quoted);
  if (at == std::string_view::npos) return {};
  at = h.find(':', at + quoted.size());
  if (at == std::string_view::npos) return {};
  ++at;
  while (at < h.size() && h[at] == ' ') ++at;
  std::size_t end = at;
  if (at < h.size() && h[at] == '(') end = h.find(')', at) + 1;
  else if (at < h.size() && h[at] == '\'') end = h.find('\'', at + 1) + 1;
  else end = h.find_first_of(",}", at);
  if (end == std::string_view::npos || end == 0 || end > h.size()) return {};
  return h.substr(at, end - at);
}

ArrayParse npy(std::span<const std::uint8_t> buf, std::uint64_t offset, std::uint64_t max_bytes) {
  if (buf.size() < 10) return need(10);
  if (std::memcmp(buf.data(), "\x93NUMPY", 6) != 0) return bad("bad-npy", offset, "not a .npy magic");
  int major = buf[6];
  std::size_t hl = 0, start = 0;
  if (major == 1) {
    hl = buf[8] | (buf[9] << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (buf.size() < 12) return need(12);
    hl = buf[8] | (buf[9] << 8) | (buf[10] << 16) | (static_cast<std::size_t>(buf[11]) << 24);
    start = 12;
  } else {
    return bad("bad-npy", offset + 6, fmt::format(".npy version {} is not known", major));
  }
  if (hl > 65536) return bad("bad-npy", offset + 8, fmt::format(".npy header of {} bytes", hl));
  if (buf.size() < start + hl) return need(start + hl);
  std::string_view h(reinterpret_cast<const char*>(buf.data() + start), hl);
  std::string_view descr = dict_value(h, "descr"), fortran = dict_value(h, "fortran_order"),
                   shape_t = dict_value(h, "shape");
  if (descr.size() < 2 || descr.front() != '\'' || shape_t.empty() || shape_t.front() != '(') {
    return bad("bad-npy", offset + start, "header lacks descr or shape (structured dtypes are not supported)");
  }
  std::vector<std::uint32_t> shape;
  std::string dims;
  for (char c : shape_t.substr(1, shape_t.size() - 2)) {
    if (c == ' ' || c == 'L') continue;
    dims += c == ',' ? 'x' : c;
  }
  while (!dims.empty() && dims.back() == 'x') dims.pop_back();
  if (!dims.empty()) {
    auto s = parse_shape(dims, "shape");
    if (!s) return bad("bad-npy", offset + start, "shape " + std::string(shape_t) + ": " + s.error().detail);
    shape = *s;
  } else {
    shape = {1};  // a 0-d array goes out as one element: PyMoDAQ cannot send 0-d
  }
  if (fortran.substr(0, 4) == "True" && shape.size() > 1) {
    return bad("bad-npy", offset + start, "Fortran-ordered arrays are not supported (save np.ascontiguousarray(a))");
  }
  return body(buf, offset, max_bytes, std::string(descr.substr(1, descr.size() - 2)), std::move(shape), start + hl);
}

}  // namespace

ArrayParse parse_array(std::span<const std::uint8_t> buf, std::uint64_t offset, std::uint64_t max_bytes) {
  if (buf.empty()) return need(1);
  if (buf[0] == 0x93) return npy(buf, offset, max_bytes);
  std::size_t scan = std::min(buf.size(), kMaxHeaderLine);
  const void* nl = std::memchr(buf.data(), '\n', scan);
  if (!nl) {
    if (buf.size() >= kMaxHeaderLine) return bad("bad-header", offset, "no header line within 256 bytes");
    std::string_view sofar(reinterpret_cast<const char*>(buf.data()), std::min<std::size_t>(buf.size(), 6));
    if (std::string_view("ARRAY ").substr(0, sofar.size()) != sofar) {
      return bad("bad-header", offset, "expected \"ARRAY <dtype> <shape>\" or a .npy array");
    }
    return need(buf.size() + 1);
  }
  std::size_t len = static_cast<const std::uint8_t*>(nl) - buf.data();
  std::string_view line(reinterpret_cast<const char*>(buf.data()), len);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, 6) != "ARRAY ") return bad("bad-header", offset, "expected \"ARRAY <dtype> <shape>\" or a .npy array");
  std::string_view rest = line.substr(6);
  std::size_t sp = rest.find(' ');
  if (sp == std::string_view::npos) return bad("bad-header", offset, "expected \"ARRAY <dtype> <shape>\"");
  std::string dtype(rest.substr(0, sp));
  std::string_view dims = rest.substr(sp + 1);
  while (!dims.empty() && dims.back() == ' ') dims.remove_suffix(1);
  auto shape = parse_shape(dims, "shape");
  if (!shape) return bad("bad-header", offset, "shape '" + std::string(dims) + "': " + shape.error().detail);
  return body(buf, offset, max_bytes, std::move(dtype), std::move(*shape), len + 1);
}

}  // namespace dl::pymodaq
