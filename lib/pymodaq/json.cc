#include "lib/pymodaq/json.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

namespace dl::pymodaq {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
  return n;
}

void number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  fmt::format_to(std::back_inserter(out), "{}", v);
}

void array(std::string& out, const Array& a, bool full) {
  out += "{\"dtype\":";
  append_json_string(out, a.dtype);
  out += ",\"shape\":[";
  for (std::size_t i = 0; i < a.shape.size(); ++i) fmt::format_to(std::back_inserter(out), "{}{}", i ? "," : "", a.shape[i]);
  out += "]";
  auto dt = parse_dtype(a.dtype);
  std::size_t n = dt && dt->itemsize ? a.bytes.size() / dt->itemsize : 0;
  if (dt && dt->numeric() && n > 0) {
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    if (dt->kind == 'f' && dt->itemsize == 8 && !dt->big_endian()) {
      // The common case (and the benchmark's): native doubles, no per-element decoding.
      // Four independent chains, so the adds and compares pipeline.
      const char* p = a.bytes.data();
      double lo[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, hi[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
      double acc[4] = {0, 0, 0, 0};
      std::size_t i = 0;
      for (; i + 4 <= n; i += 4) {
        double v[4];
        std::memcpy(v, p + 8 * i, 32);
        for (int k = 0; k < 4; ++k) {
          lo[k] = v[k] < lo[k] ? v[k] : lo[k];
          hi[k] = v[k] > hi[k] ? v[k] : hi[k];
          acc[k] += v[k];
        }
      }
      for (; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        lo[0] = std::min(lo[0], v);
        hi[0] = std::max(hi[0], v);
        acc[0] += v;
      }
      for (int k = 0; k < 4; ++k) {
        mn = std::min(mn, lo[k]);
        mx = std::max(mx, hi[k]);
      }
      sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        double v = a.at(i, *dt);
        mn = std::min(mn, v);
        mx = std::max(mx, v);
        sum += v;
      }
    }
    out += ",\"min\":";
    number(out, mn);
    out += ",\"max\":";
    number(out, mx);
    out += ",\"mean\":";
    number(out, sum / static_cast<double>(n));
    if (full) {
      out += ",\"values\":[";
      for (std::size_t i = 0; i < n; ++i) {
        if (i) out += ',';
        number(out, a.at(i, *dt));
      }
      out += "]";
    }
  } else if (full) {
    out += ",\"hex\":\"";
    for (unsigned char c : a.bytes) fmt::format_to(std::back_inserter(out), "{:02x}", c);
    out += "\"";
  }
  out += "}";
}

void value(std::string& out, const Value& v, bool full) {
  switch (v.kind) {
    case Value::Kind::str: append_json_string(out, v.text); return;
    case Value::Kind::bytes:
      out += "{\"bytes\":";
      append_json_string(out, v.text);
      out += "}";
      return;
    case Value::Kind::scalar: number(out, v.scalar.as_double()); return;
    case Value::Kind::array: array(out, v.array, full); return;
    case Value::Kind::list:
      out += "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ",";
        value(out, v.items[i], full);
      }
      out += "]";
      return;
  }
}

void strings(std::string& out, const std::vector<std::string>& v) {
  out += "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ",";
    append_json_string(out, v[i]);
  }
  out += "]";
}

void extra(std::string& out, const std::vector<std::pair<std::string, Value>>& e, bool full) {
  if (e.empty()) return;
  out += ",\"extra\":{";
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (i) out += ",";
    append_json_string(out, e[i].first);
    out += ":";
    value(out, e[i].second, full);
  }
  out += "}";
}

void dwa(std::string& out, const Dwa& w, bool wire_objects, bool full) {
  out += "{";
  if (wire_objects) {
    out += "\"class\":";
    append_json_string(out, w.cls);
    out += ",\"name\":";
    append_json_string(out, w.name);
    out += ",\"timestamp\":";
    number(out, w.timestamp);
    out += ",\"units\":";
    append_json_string(out, w.units);
    out += ",\"source\":";
    append_json_string(out, w.source);
    out += ",";
  }
  out += "\"dim\":";
  append_json_string(out, w.dim);
  out += ",\"labels\":";
  strings(out, w.labels);
  out += ",\"arrays\":[";
  for (std::size_t i = 0; i < w.data.size(); ++i) {
    if (i) out += ",";
    array(out, w.data[i], full);
  }
  out += "]";
  if (wire_objects) {
    out += ",\"origin\":";
    append_json_string(out, w.origin);
    if (!w.nav_indexes.empty()) {
      out += ",\"nav_indexes\":[";
      for (std::size_t i = 0; i < w.nav_indexes.size(); ++i) fmt::format_to(std::back_inserter(out), "{}{}", i ? "," : "", w.nav_indexes[i]);
      out += "]";
    }
    if (!w.axes.empty()) {
      out += ",\"axes\":[";
      for (std::size_t i = 0; i < w.axes.size(); ++i) {
        if (i) out += ",";
        out += "{\"label\":";
        append_json_string(out, w.axes[i].label);
        out += ",\"units\":";
        append_json_string(out, w.axes[i].units);
        fmt::format_to(std::back_inserter(out), ",\"index\":{},\"values\":", w.axes[i].index);
        array(out, w.axes[i].values, full);
        out += "}";
      }
      out += "]";
    }
    if (!w.errors.empty()) out += fmt::format(",\"errors\":{}", w.errors.size());
    extra(out, w.extra, full);
  }
  out += "}";
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = utf8_len(s, i);
    if (n == 0) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
}

std::string message_json(const Message& m, const Dialect& d, const JsonOptions& o) {
  std::string out = "{";
  if (o.offset) fmt::format_to(std::back_inserter(out), "\"offset\":{},", *o.offset);
  if (o.size) fmt::format_to(std::back_inserter(out), "\"bytes\":{},", *o.size);
  const bool objects = d.gen == Generation::v4 || d.gen == Generation::v5;
  if (m.command.empty() && m.object) {
    out += "\"object\":";
    if (m.object->kind == Value::Kind::str && m.object->text.empty() && !m.object->pytype.empty() && m.object->pytype != "str") {
      out += "{\"type\":";
      append_json_string(out, m.object->pytype);
      out += "}";
    } else {
      value(out, *m.object, o.full);
    }
    out += "}";
    return out;
  }
  out += "\"command\":";
  append_json_string(out, m.command);
  switch (payload_of(m.command, d)) {
    case Payload::none: break;
    case Payload::unknown: out += ",\"unknown\":true"; break;
    case Payload::data:
      if (m.data) {
        if (objects) {
          out += ",\"name\":";
          append_json_string(out, m.data->name);
          out += ",\"timestamp\":";
          number(out, m.data->timestamp);
        }
        out += ",\"data\":[";
        for (std::size_t i = 0; i < m.data->data.size(); ++i) {
          if (i) out += ",";
          dwa(out, m.data->data[i], objects, o.full);
        }
        out += "]";
        extra(out, m.data->extra, o.full);
      }
      break;
    case Payload::position:
      out += ",\"position\":";
      number(out, position_value(m));
      if (m.position) {
        if (objects) {
          out += ",\"units\":";
          append_json_string(out, m.position->units);
          out += ",\"class\":";
          append_json_string(out, m.position->cls);
          out += ",\"timestamp\":";
          number(out, m.position->timestamp);
        } else if (!m.position->data.empty()) {
          out += ",\"dtype\":";
          append_json_string(out, m.position->data[0].dtype);
        }
      }
      break;
    case Payload::path_xml:
      out += ",\"path\":";
      strings(out, m.path);
      [[fallthrough]];
    case Payload::xml:
      out += ",\"xml\":";
      append_json_string(out, m.xml);
      if (d.gen == Generation::v5) out += m.xml_bytes ? ",\"xml_type\":\"bytes\"" : ",\"xml_type\":\"str\"";
      break;
    case Payload::info:
      out += ",\"name\":";
      append_json_string(out, m.info_name);
      out += ",\"value\":";
      append_json_string(out, m.info_value);
      break;
    case Payload::axis:
      out += ",\"axis\":";
      if (m.axis) array(out, *m.axis, o.full);
      else out += "null";
      out += ",\"label\":";
      append_json_string(out, m.axis_label);
      out += ",\"units\":";
      append_json_string(out, m.axis_units);
      break;
  }
  out += "}";
  return out;
}

}  // namespace dl::pymodaq
