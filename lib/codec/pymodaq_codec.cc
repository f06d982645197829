#include "lib/codec/pymodaq_codec.h"

#include <fmt/format.h>

#include <cstring>

#include "lib/base/byte_order.h"

namespace dl::pymodaq {

namespace {

// ------------------------------------------------------------------------------------ writing

struct Writer {
  std::vector<std::uint8_t>& o;
  void u32(std::uint32_t v) {
    std::size_t at = o.size();
    o.resize(at + 4);
    put_u32(o.data() + at, v);
  }
  void raw(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    o.insert(o.end(), b, b + n);
  }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    raw(s.data(), s.size());
  }
  void scalar(const Scalar& s) {
    str(s.dtype);
    str(s.bytes);
  }
  void ndarray(const Array& a) {  // v2, v4, v5
    str(a.dtype);
    u32(static_cast<std::uint32_t>(a.bytes.size()));
    u32(static_cast<std::uint32_t>(a.shape.size()));
    for (auto s : a.shape) u32(s);
    raw(a.bytes.data(), a.bytes.size());
  }
  void array_v1(const Array& a) {
    str(a.dtype);
    u32(static_cast<std::uint32_t>(a.bytes.size()));
    u32(a.shape.empty() ? 1 : a.shape[0]);
    u32(a.shape.size() > 1 ? a.shape[1] : 1);
    raw(a.bytes.data(), a.bytes.size());
  }
  // v5: U32(total) + object; `body` writes the object.
  template <class F>
  void frame(F&& body) {
    std::size_t at = o.size();
    u32(0);
    body();
    put_u32(o.data() + at, static_cast<std::uint32_t>(o.size() - at - 4));
  }
};

Scalar first_as_scalar(const Array& a) { return Scalar{a.dtype, a.bytes}; }

// ---- v4 (Serializer)

void v4_value(Writer& w, const Value& v, const Dialect& d);

void v4_tagged(Writer& w, const Value& v, const Dialect& d) {
  switch (v.kind) {
    case Value::Kind::str: w.str("string"); break;
    case Value::Kind::bytes: w.str("bytes"); break;
    case Value::Kind::scalar: w.str(v.pytype == "bool" ? "bool" : "scalar"); break;
    case Value::Kind::array: w.str("array"); break;
    case Value::Kind::list: w.str("list"); break;
  }
  v4_value(w, v, d);
}

void v4_value(Writer& w, const Value& v, const Dialect& d) {
  switch (v.kind) {
    case Value::Kind::str:
    case Value::Kind::bytes: w.str(v.text); break;
    case Value::Kind::scalar: w.scalar(v.scalar); break;
    case Value::Kind::array: w.ndarray(v.array); break;
    case Value::Kind::list:
      w.u32(static_cast<std::uint32_t>(v.items.size()));
      for (const auto& i : v.items) v4_tagged(w, i, d);
      break;
  }
}

void v4_axis(Writer& w, const Axis& a) {
  w.str("Axis");
  w.str(a.label);
  w.str(a.units);
  w.ndarray(a.values);
  w.scalar(i8_scalar(a.index));
  w.scalar(i8_scalar(a.spread_order));
}

void v4_dwa(Writer& w, const Dwa& a, const Dialect& d) {
  w.str(a.cls);
  w.scalar(f8_scalar(a.timestamp));
  w.str(a.name);
  if (d.v4_units()) w.str(a.units);
  w.str(a.source);
  w.str(a.dim);
  w.str(a.distribution);
  w.u32(static_cast<std::uint32_t>(a.data.size()));
  for (const auto& x : a.data) { w.str("array"); w.ndarray(x); }
  w.u32(static_cast<std::uint32_t>(a.labels.size()));
  for (const auto& x : a.labels) { w.str("string"); w.str(x); }
  w.str(a.origin);
  w.u32(static_cast<std::uint32_t>(a.nav_indexes.size()));
  for (auto x : a.nav_indexes) { w.str("scalar"); w.scalar(i8_scalar(x)); }
  w.u32(static_cast<std::uint32_t>(a.axes.size()));
  for (const auto& x : a.axes) { w.str("axis"); v4_axis(w, x); }
  if (d.v4_errors()) {
    w.u32(static_cast<std::uint32_t>(a.errors.size()));
    for (const auto& x : a.errors) { w.str("array"); w.ndarray(x); }
  }
  if (d.v4_extra()) {
    w.u32(static_cast<std::uint32_t>(a.extra.size()));
    for (const auto& x : a.extra) { w.str("string"); w.str(x.first); }
    for (const auto& x : a.extra) v4_tagged(w, x.second, d);
  }
}

// ---- v5 (typed objects)

void v5_str(Writer& w, std::string_view s) { w.str("str"); w.str(s); }
void v5_list_count(Writer& w, std::size_t n) { w.str("list"); w.u32(static_cast<std::uint32_t>(n)); }

void v5_value(Writer& w, const Value& v) {
  switch (v.kind) {
    case Value::Kind::str: v5_str(w, v.text); break;
    case Value::Kind::bytes: w.str("bytes"); w.str(v.text); break;
    case Value::Kind::scalar:
      if (v.pytype == "int" || v.pytype == "float" || v.pytype == "bool" || v.pytype == "complex") {
        w.str(v.pytype);
      } else {
        auto dt = parse_dtype(v.scalar.dtype);
        char k = dt ? dt->kind : 'f';
        w.str(k == 'f' ? "float" : k == 'c' ? "complex" : k == 'b' ? "bool" : "int");
      }
      w.scalar(v.scalar);
      break;
    case Value::Kind::array: w.str("ndarray"); w.ndarray(v.array); break;
    case Value::Kind::list:
      v5_list_count(w, v.items.size());
      for (const auto& i : v.items) v5_value(w, i);
      break;
  }
}

void v5_int(Writer& w, std::int64_t v) { w.str("int"); w.scalar(i8_scalar(v)); }
void v5_float(Writer& w, double v) { w.str("float"); w.scalar(f8_scalar(v)); }

void v5_extra(Writer& w, const std::vector<std::pair<std::string, Value>>& extra) {
  v5_list_count(w, extra.size());
  for (const auto& x : extra) v5_str(w, x.first);
  for (const auto& x : extra) v5_value(w, x.second);
}

void v5_dwa(Writer& w, const Dwa& a) {
  w.str(a.cls);
  v5_float(w, a.timestamp);
  v5_str(w, a.name);
  v5_str(w, a.source);
  v5_str(w, a.dim);
  v5_str(w, a.distribution);
  v5_list_count(w, a.data.size());
  for (const auto& x : a.data) { w.str("ndarray"); w.ndarray(x); }
  v5_str(w, a.units);
  v5_list_count(w, a.labels.size());
  for (const auto& x : a.labels) v5_str(w, x);
  v5_str(w, a.origin);
  v5_list_count(w, a.nav_indexes.size());
  for (auto x : a.nav_indexes) v5_int(w, x);
  v5_list_count(w, a.axes.size());
  for (const auto& x : a.axes) {
    w.str("Axis");
    v5_str(w, x.label);
    v5_str(w, x.units);
    w.str("ndarray");
    w.ndarray(x.values);
    v5_int(w, x.index);
    v5_int(w, x.spread_order);
  }
  v5_list_count(w, a.errors.size());
  for (const auto& x : a.errors) { w.str("ndarray"); w.ndarray(x); }
  v5_extra(w, a.extra);
}

void v5_dte(Writer& w, const Dte& t) {
  w.str("DataToExport");
  v5_float(w, t.timestamp);
  v5_str(w, t.name);
  v5_list_count(w, t.data.size());
  for (const auto& a : t.data) v5_dwa(w, a);
  v5_extra(w, t.extra);
}

std::vector<const Array*> all_arrays(const Dte& t) {
  std::vector<const Array*> v;
  for (const auto& a : t.data)
    for (const auto& x : a.data) v.push_back(&x);
  return v;
}

// ------------------------------------------------------------------------------------ reading

struct NeedMore {
  std::size_t needed;
};
struct Bad {
  std::string id, field;
  std::uint64_t offset;
  std::string detail;
  bool too_large = false;
};

struct Reader {
  const std::uint8_t* p;
  std::size_t n;           // bytes available
  std::size_t end;         // where the current object must end (n, or a v5 frame's end)
  bool framed = false;     // inside a v5 frame: running out is malformed, not "need more"
  std::uint64_t base;
  const Limits& lim;
  std::size_t pos = 0;

  [[noreturn]] void bad(std::string id, const std::string& field, std::size_t at, std::string detail) {
    throw Bad{std::move(id), field, base + at, std::move(detail)};
  }
  void need(std::size_t k, const std::string& field) {
    if (pos + k <= end) return;
    if (framed) bad("bad-length", field, pos, fmt::format("{} bytes needed but the frame ends {} bytes on", k, end - pos));
    throw NeedMore{pos + k};
  }
  std::uint32_t u32(const std::string& field) {
    need(4, field);
    std::uint32_t v = get_u32(p + pos);
    pos += 4;
    return v;
  }
  // A length that announces `len` bytes following it: refused when it would take the message
  // past the limit, so nobody waits for (or allocates) absurd sizes.
  void check_len(std::uint64_t len, const std::string& field, std::size_t field_at) {
    if (pos + len > lim.max_message) {
      throw Bad{"too-large", field, base + field_at,
                fmt::format("{} bytes announced, beyond the {}-byte message limit", len, lim.max_message), true};
    }
  }
  std::string bytes(std::uint64_t len, const std::string& field, std::size_t field_at) {
    check_len(len, field, field_at);
    need(static_cast<std::size_t>(len), field);
    std::string s(reinterpret_cast<const char*>(p + pos), static_cast<std::size_t>(len));
    pos += static_cast<std::size_t>(len);
    return s;
  }
  std::string str(const std::string& field) {
    std::size_t at = pos;
    std::uint32_t len = u32(field + " length");
    return bytes(len, field, at);
  }
  std::string short_str(const std::string& field, std::uint32_t max) {
    std::size_t at = pos;
    std::uint32_t len = u32(field + " length");
    if (len > max) bad("bad-length", field + " length", at, fmt::format("{} bytes, at most {} expected", len, max));
    return bytes(len, field, at);
  }
  std::uint32_t count(const std::string& field) {
    std::size_t at = pos;
    std::uint32_t c = u32(field);
    if (c > lim.max_items) bad("too-many", field, at, fmt::format("{} items, at most {}", c, lim.max_items));
    return c;
  }
  DType dtype(std::string& text, const std::string& field) {
    std::size_t at = pos;
    text = short_str(field, 64);
    auto d = parse_dtype(text);
    if (!d) bad("bad-dtype", field, at, d.error().detail + " ('" + text.substr(0, 32) + "')");
    return *d;
  }
  Scalar scalar(const std::string& field) {
    Scalar s;
    DType dt = dtype(s.dtype, field + " dtype");
    std::size_t at = pos;
    std::uint32_t len = u32(field + " nbytes");
    if (len == 0 || dt.itemsize == 0 || len % dt.itemsize != 0) {
      bad("bad-shape", field + " nbytes", at, fmt::format("{} bytes for items of {}", len, dt.itemsize));
    }
    s.bytes = bytes(len, field + " nbytes", at);
    return s;
  }
  void array_body(Array& a, const DType& dt, std::uint64_t nbytes, std::size_t nbytes_at, const std::string& field) {
    std::uint64_t elems = 1;
    for (auto s : a.shape) {
      elems *= s;
      if (elems > lim.max_message) break;
    }
    if (elems * dt.itemsize != nbytes) {
      std::string shape;
      for (auto s : a.shape) shape += (shape.empty() ? "" : "x") + std::to_string(s);
      bad("bad-shape", field + " nbytes", nbytes_at,
          fmt::format("{} bytes, but shape ({}) of {} needs {}", nbytes, shape, a.dtype,
                      elems > lim.max_message ? std::string("more") : std::to_string(elems * dt.itemsize)));
    }
    a.bytes = bytes(nbytes, field + " data", nbytes_at);
  }
  Array ndarray(const std::string& field) {
    Array a;
    DType dt = dtype(a.dtype, field + " dtype");
    std::size_t nb_at = pos;
    std::uint32_t nbytes = u32(field + " nbytes");
    check_len(nbytes, field + " nbytes", nb_at);
    std::size_t nd_at = pos;
    std::uint32_t ndim = u32(field + " ndim");
    if (ndim == 0 || ndim > lim.max_ndim) bad("bad-shape", field + " ndim", nd_at, fmt::format("{} dimensions", ndim));
    need(4ull * ndim, field + " shape");
    for (std::uint32_t i = 0; i < ndim; ++i) a.shape.push_back(u32(field + " shape"));
    array_body(a, dt, nbytes, nb_at, field);
    return a;
  }
  Array array_v1(const std::string& field) {
    Array a;
    DType dt = dtype(a.dtype, field + " dtype");
    std::size_t nb_at = pos;
    std::uint32_t nbytes = u32(field + " nbytes");
    check_len(nbytes, field + " nbytes", nb_at);
    std::uint32_t nrow = u32(field + " Nrow");
    std::uint32_t ncol = u32(field + " Ncol");
    a.shape.push_back(nrow);
    if (ncol > 1) a.shape.push_back(ncol);  // Ncol 0 and 1 both mean one dimension
    array_body(a, dt, nbytes, nb_at, field);
    return a;
  }
  std::string tag(const std::string& field) { return short_str(field + " tag", 256); }
  void expect_tag(const std::string& want, const std::string& field) {
    std::size_t at = pos;
    std::string t = tag(field);
    if (t != want) bad("bad-tag", field + " tag", at, fmt::format("'{}' where '{}' was expected", t.substr(0, 40), want));
  }
};

bool is_dwa_class(std::string_view c) {
  return c.size() > 4 && c.substr(0, 4) == "Data" && c != "DataToExport";
}

// ---- v4

Value v4_value(Reader& r, std::string_view tag, std::size_t tag_at, const std::string& field, int depth);

Value v4_tagged(Reader& r, const std::string& field, int depth) {
  std::size_t at = r.pos;
  std::string t = r.tag(field);
  return v4_value(r, t, at, field, depth);
}

Value v4_value(Reader& r, std::string_view t, std::size_t tag_at, const std::string& field, int depth) {
  if (depth > 16) r.bad("too-deep", field, tag_at, "lists nested more than 16 deep");
  Value v;
  v.pytype = std::string(t);
  if (t == "string") { v.kind = Value::Kind::str; v.text = r.str(field); }
  else if (t == "bytes") { v.kind = Value::Kind::bytes; v.text = r.str(field); }
  else if (t == "scalar" || t == "bool") { v.kind = Value::Kind::scalar; v.scalar = r.scalar(field); }
  else if (t == "array") { v.kind = Value::Kind::array; v.array = r.ndarray(field); }
  else if (t == "list") {
    v.kind = Value::Kind::list;
    std::uint32_t c = r.count(field + " count");
    for (std::uint32_t i = 0; i < c; ++i) v.items.push_back(v4_tagged(r, field, depth + 1));
  } else {
    r.bad("bad-tag", field + " tag", tag_at, fmt::format("'{}' is not a value this emulator reads here", std::string(t.substr(0, 40))));
  }
  return v;
}

Axis v4_axis(Reader& r) {
  Axis a;
  std::size_t at = r.pos;
  std::string cls = r.short_str("axis class", 64);
  if (cls != "Axis") r.bad("bad-tag", "axis class", at, "'" + cls + "' is not Axis");
  a.label = r.str("axis label");
  a.units = r.str("axis units");
  a.values = r.ndarray("axis data");
  a.index = static_cast<std::int64_t>(r.scalar("axis index").as_double());
  a.spread_order = static_cast<std::int64_t>(r.scalar("axis spread_order").as_double());
  return a;
}

Dwa v4_dwa(Reader& r, const Dialect& d) {
  Dwa a;
  std::size_t at = r.pos;
  a.cls = r.short_str("DataWithAxes class", 64);
  if (!is_dwa_class(a.cls)) r.bad("bad-tag", "DataWithAxes class", at, "'" + a.cls + "' is not a DataWithAxes class");
  a.timestamp = r.scalar("timestamp").as_double();
  a.name = r.str("name");
  if (d.v4_units()) a.units = r.str("units");
  a.source = r.str("source");
  a.dim = r.str("dim");
  a.distribution = r.str("distribution");
  std::uint32_t c = r.count("data count");
  for (std::uint32_t i = 0; i < c; ++i) {
    r.expect_tag("array", "data item");
    a.data.push_back(r.ndarray("data array"));
  }
  c = r.count("labels count");
  for (std::uint32_t i = 0; i < c; ++i) {
    r.expect_tag("string", "label");
    a.labels.push_back(r.str("label"));
  }
  a.origin = r.str("origin");
  c = r.count("nav_indexes count");
  for (std::uint32_t i = 0; i < c; ++i) {
    std::size_t t_at = r.pos;
    std::string t = r.tag("nav index");
    if (t != "scalar" && t != "bool") r.bad("bad-tag", "nav index tag", t_at, "'" + t.substr(0, 40) + "' where 'scalar' was expected");
    a.nav_indexes.push_back(static_cast<std::int64_t>(r.scalar("nav index").as_double()));
  }
  c = r.count("axes count");
  for (std::uint32_t i = 0; i < c; ++i) {
    r.expect_tag("axis", "axis");
    a.axes.push_back(v4_axis(r));
  }
  if (d.v4_errors()) {
    c = r.count("errors count");
    for (std::uint32_t i = 0; i < c; ++i) {
      r.expect_tag("array", "error item");
      a.errors.push_back(r.ndarray("error array"));
    }
  }
  if (d.v4_extra()) {
    c = r.count("extra attributes count");
    std::vector<std::string> names;
    for (std::uint32_t i = 0; i < c; ++i) {
      r.expect_tag("string", "extra attribute name");
      names.push_back(r.str("extra attribute name"));
    }
    for (auto& n : names) a.extra.emplace_back(std::move(n), v4_tagged(r, "extra attribute", 0));
  }
  return a;
}

Dte v4_dte(Reader& r, const Dialect& d) {
  Dte t;
  std::size_t at = r.pos;
  std::string cls = r.short_str("DataToExport class", 64);
  if (cls != "DataToExport") r.bad("bad-tag", "DataToExport class", at, "'" + cls.substr(0, 40) + "' is not DataToExport");
  t.timestamp = r.scalar("timestamp").as_double();
  t.name = r.str("name");
  std::uint32_t c = r.count("DataToExport count");
  for (std::uint32_t i = 0; i < c; ++i) {
    r.expect_tag("dwa", "DataToExport item");
    t.data.push_back(v4_dwa(r, d));
  }
  return t;
}

// ---- v5

std::string v5_tag(Reader& r, const std::string& field) { return r.short_str(field + " type", 256); }

void v5_expect(Reader& r, std::string_view want, const std::string& field) {
  std::size_t at = r.pos;
  std::string t = v5_tag(r, field);
  if (t != want) r.bad("bad-tag", field + " type", at, fmt::format("'{}' where '{}' was expected", t.substr(0, 40), want));
}

std::string v5_str(Reader& r, const std::string& field) {
  v5_expect(r, "str", field);
  return r.str(field);
}

double v5_number(Reader& r, const std::string& field) {
  std::size_t at = r.pos;
  std::string t = v5_tag(r, field);
  if (t != "float" && t != "int" && t != "bool") r.bad("bad-tag", field + " type", at, "'" + t.substr(0, 40) + "' where a number was expected");
  return r.scalar(field).as_double();
}

std::uint32_t v5_list(Reader& r, const std::string& field) {
  v5_expect(r, "list", field);
  return r.count(field + " count");
}

Value v5_any(Reader& r, const std::string& field, int depth) {
  std::size_t at = r.pos;
  if (depth > 16) r.bad("too-deep", field, at, "lists nested more than 16 deep");
  Value v;
  v.pytype = v5_tag(r, field);
  const std::string& t = v.pytype;
  if (t == "str") { v.kind = Value::Kind::str; v.text = r.str(field); }
  else if (t == "bytes") { v.kind = Value::Kind::bytes; v.text = r.str(field); }
  else if (t == "int" || t == "float" || t == "bool" || t == "complex") { v.kind = Value::Kind::scalar; v.scalar = r.scalar(field); }
  else if (t == "ndarray") { v.kind = Value::Kind::array; v.array = r.ndarray(field); }
  else if (t == "list") {
    v.kind = Value::Kind::list;
    std::uint32_t c = r.count(field + " count");
    for (std::uint32_t i = 0; i < c; ++i) v.items.push_back(v5_any(r, field, depth + 1));
  } else {
    r.bad("bad-tag", field + " type", at, fmt::format("'{}' is not a value this emulator reads here", t.substr(0, 40)));
  }
  return v;
}

void v5_extra(Reader& r, std::vector<std::pair<std::string, Value>>& extra) {
  std::uint32_t c = v5_list(r, "extra attributes");
  std::vector<std::string> names;
  for (std::uint32_t i = 0; i < c; ++i) names.push_back(v5_str(r, "extra attribute name"));
  for (auto& n : names) extra.emplace_back(std::move(n), v5_any(r, "extra attribute", 0));
}

Dwa v5_dwa_body(Reader& r, std::string cls) {
  Dwa a;
  a.cls = std::move(cls);
  a.timestamp = v5_number(r, "timestamp");
  a.name = v5_str(r, "name");
  a.source = v5_str(r, "source");
  a.dim = v5_str(r, "dim");
  a.distribution = v5_str(r, "distribution");
  std::uint32_t c = v5_list(r, "data");
  for (std::uint32_t i = 0; i < c; ++i) {
    v5_expect(r, "ndarray", "data item");
    a.data.push_back(r.ndarray("data array"));
  }
  a.units = v5_str(r, "units");
  c = v5_list(r, "labels");
  for (std::uint32_t i = 0; i < c; ++i) a.labels.push_back(v5_str(r, "label"));
  a.origin = v5_str(r, "origin");
  c = v5_list(r, "nav_indexes");
  for (std::uint32_t i = 0; i < c; ++i) a.nav_indexes.push_back(static_cast<std::int64_t>(v5_number(r, "nav index")));
  c = v5_list(r, "axes");
  for (std::uint32_t i = 0; i < c; ++i) {
    v5_expect(r, "Axis", "axis");
    Axis x;
    x.label = v5_str(r, "axis label");
    x.units = v5_str(r, "axis units");
    v5_expect(r, "ndarray", "axis data");
    x.values = r.ndarray("axis data");
    x.index = static_cast<std::int64_t>(v5_number(r, "axis index"));
    x.spread_order = static_cast<std::int64_t>(v5_number(r, "axis spread_order"));
    a.axes.push_back(std::move(x));
  }
  c = v5_list(r, "errors");
  for (std::uint32_t i = 0; i < c; ++i) {
    v5_expect(r, "ndarray", "error item");
    a.errors.push_back(r.ndarray("error array"));
  }
  v5_extra(r, a.extra);
  return a;
}

Dwa v5_dwa(Reader& r) {
  std::size_t at = r.pos;
  std::string cls = v5_tag(r, "DataWithAxes");
  if (!is_dwa_class(cls)) r.bad("bad-tag", "DataWithAxes type", at, "'" + cls.substr(0, 40) + "' is not a DataWithAxes class");
  return v5_dwa_body(r, std::move(cls));
}

Dte v5_dte(Reader& r) {
  Dte t;
  v5_expect(r, "DataToExport", "DataToExport");
  t.timestamp = v5_number(r, "timestamp");
  t.name = v5_str(r, "name");
  std::uint32_t c = v5_list(r, "DataToExport data");
  for (std::uint32_t i = 0; i < c; ++i) t.data.push_back(v5_dwa(r));
  v5_extra(r, t.extra);
  return t;
}

// Runs `body` over one v5 frame starting at r.pos: the frame must be complete before the body
// runs, and the body must use it exactly.
template <class F>
void v5_frame(Reader& r, const std::string& field, F&& body) {
  std::size_t at = r.pos;
  std::uint32_t total = r.u32(field + " frame length");
  if (total > r.lim.max_message) {
    throw Bad{"too-large", field + " frame length", r.base + at,
              fmt::format("{} bytes announced, beyond the {}-byte message limit", total, r.lim.max_message), true};
  }
  if (total < 8) r.bad("bad-length", field + " frame length", at, fmt::format("{} bytes cannot hold a typed object", total));
  r.need(total, field);
  std::size_t saved_end = r.end;
  bool saved_framed = r.framed;
  r.end = r.pos + total;
  r.framed = true;
  body();
  if (r.pos != r.end) r.bad("bad-length", field + " frame length", at, fmt::format("the object ends {} bytes before its frame", r.end - r.pos));
  r.end = saved_end;
  r.framed = saved_framed;
}

// ---- payloads per generation

Dte list_to_dte(std::vector<Array> arrays) {
  Dte t;
  Dwa a;
  a.dim = arrays.empty() ? "Data0D" : std::string(dim_name(arrays[0].shape.size(), arrays[0].elements()));
  for (std::size_t i = 0; i < arrays.size(); ++i) a.labels.push_back(fmt::format("CH{:02}", i));
  a.data = std::move(arrays);
  t.data.push_back(std::move(a));
  return t;
}

Dwa scalar_to_position(Scalar s) {
  Dwa a;
  a.cls = "DataActuator";
  a.name = "actuator";
  Array x;
  x.dtype = std::move(s.dtype);
  auto dt = parse_dtype(x.dtype);
  x.shape = {static_cast<std::uint32_t>(dt && dt->itemsize ? s.bytes.size() / dt->itemsize : 1)};
  x.bytes = std::move(s.bytes);
  a.data.push_back(std::move(x));
  a.labels = {"CH00"};
  return a;
}

void read_payload(Reader& r, Message& m, Payload kind, const Dialect& d) {
  const bool v1 = d.gen == Generation::v1, v5 = d.gen == Generation::v5;
  switch (kind) {
    case Payload::none:
    case Payload::unknown: return;
    case Payload::data:
      if (v5) {
        v5_frame(r, "data", [&] { m.data = v5_dte(r); });
      } else if (d.gen == Generation::v4) {
        m.data = v4_dte(r, d);
      } else {
        std::uint32_t c = r.count("data count");
        std::vector<Array> arrays;
        for (std::uint32_t i = 0; i < c; ++i) {
          if (!v1) r.expect_tag("array", "data item");
          arrays.push_back(v1 ? r.array_v1("data array") : r.ndarray("data array"));
        }
        m.data = list_to_dte(std::move(arrays));
      }
      return;
    case Payload::position:
      if (v5) v5_frame(r, "position", [&] { m.position = v5_dwa(r); });
      else if (d.gen == Generation::v4) m.position = v4_dwa(r, d);
      else m.position = scalar_to_position(r.scalar("position"));
      return;
    case Payload::path_xml:
    case Payload::xml:
      if (kind == Payload::path_xml) {
        if (v5) {
          v5_frame(r, "path", [&] {
            std::uint32_t c = v5_list(r, "path");
            for (std::uint32_t i = 0; i < c; ++i) m.path.push_back(v5_str(r, "path element"));
          });
        } else {
          std::uint32_t c = r.count("path count");
          for (std::uint32_t i = 0; i < c; ++i) {
            if (!v1) r.expect_tag("string", "path element");
            m.path.push_back(r.str("path element"));
          }
        }
      }
      if (v5) {
        v5_frame(r, "xml", [&] {
          std::size_t at = r.pos;
          std::string t = v5_tag(r, "xml");
          if (t != "bytes" && t != "str") r.bad("bad-tag", "xml type", at, "'" + t.substr(0, 40) + "' where bytes or str was expected");
          m.xml_bytes = t == "bytes";
          m.xml = r.str("xml");
        });
      } else {
        m.xml = r.str("xml");
      }
      return;
    case Payload::info:
      if (v5) {
        v5_frame(r, "info name", [&] { m.info_name = v5_str(r, "info name"); });
        v5_frame(r, "info value", [&] { m.info_value = v5_str(r, "info value"); });
      } else if (v1) {
        m.info_name = r.str("info name");
        std::size_t at = r.pos;
        std::uint32_t len = r.u32("info value length");
        if (len != 8) r.bad("bad-length", "info value length", at, fmt::format("{} bytes, 8 expected (float64)", len));
        r.need(8, "info value");
        m.info_value = fmt::format("{}", get_f64(r.p + r.pos));
        r.pos += 8;
      } else {
        m.info_name = r.str("info name");
        m.info_value = r.str("info value");
      }
      return;
    case Payload::axis:
      m.axis = v1 ? r.array_v1("axis") : r.ndarray("axis");
      m.axis_label = r.str("axis label");
      m.axis_units = r.str("axis units");
      return;
  }
}

void decode_message(Reader& r, Message& m, const Dialect& d) {
  if (d.gen == Generation::v5) {
    bool is_command = false;
    v5_frame(r, "command", [&] {
      std::size_t at = r.pos;
      std::string t = v5_tag(r, "command");
      if (t == "str") {
        std::size_t len_at = r.pos;
        std::uint32_t len = r.u32("command length");
        if (len > r.lim.max_command) r.bad("bad-length", "command length", len_at, fmt::format("{} bytes, at most {} expected", len, r.lim.max_command));
        m.command = r.bytes(len, "command", len_at);
        is_command = true;
      } else {
        // Not a command: the payload of an unknown command. The frame length keeps us in step.
        r.pos = at;
        try {
          m.object = v5_any(r, "object", 0);
        } catch (const Bad&) {
          Value v;
          v.pytype = t;
          m.object = std::move(v);
          r.pos = r.end;
        }
      }
    });
    if (is_command) read_payload(r, m, payload_of(m.command, d), d);
    return;
  }
  std::size_t at = r.pos;
  std::uint32_t len = r.u32("command length");
  if (len > r.lim.max_command) r.bad("bad-length", "command length", at, fmt::format("{} bytes, at most {} expected (out of step?)", len, r.lim.max_command));
  m.command = r.bytes(len, "command", at);
  read_payload(r, m, payload_of(m.command, d), d);
}

}  // namespace

Decoded decode(std::span<const std::uint8_t> buf, const Dialect& d, const Limits& limits, std::uint64_t stream_offset) {
  Decoded out;
  Reader r{buf.data(), buf.size(), buf.size(), false, stream_offset, limits};
  try {
    decode_message(r, out.message, d);
    out.status = DecodeStatus::message;
    out.consumed = r.pos;
  } catch (const NeedMore& n) {
    out = Decoded{};
    out.status = DecodeStatus::need_more;
    out.needed = n.needed;
  } catch (Bad& b) {
    out = Decoded{};
    out.status = DecodeStatus::bad;
    out.too_large = b.too_large;
    out.id = std::move(b.id);
    out.field = std::move(b.field);
    out.offset = b.offset;
    out.detail = std::move(b.detail);
  }
  return out;
}

Error decode_error(const Decoded& d, std::string_view context) {
  std::string text = fmt::format("{} at byte {}: {}", d.field, d.offset, d.detail);
  Error e = protocol_error(d.id, std::string(context), text, false);
  if (d.too_large) e.kind = ErrorKind::too_large;
  return e;
}

void encode_string(std::string_view s, const Dialect& d, std::vector<std::uint8_t>& out) {
  Writer w{out};
  if (d.gen == Generation::v5) w.frame([&] { v5_str(w, s); });
  else w.str(s);
}

void encode_data(const Dte& dte, const Dialect& d, std::vector<std::uint8_t>& out) {
  Writer w{out};
  switch (d.gen) {
    case Generation::v1:
    case Generation::v2: {
      auto arrays = all_arrays(dte);
      w.u32(static_cast<std::uint32_t>(arrays.size()));
      for (const Array* a : arrays) {
        if (d.gen == Generation::v1) {
          w.array_v1(*a);
        } else {
          w.str("array");
          w.ndarray(*a);
        }
      }
      return;
    }
    case Generation::v4:
      w.str("DataToExport");
      w.scalar(f8_scalar(dte.timestamp));
      w.str(dte.name);
      w.u32(static_cast<std::uint32_t>(dte.data.size()));
      for (const auto& a : dte.data) {
        w.str("dwa");
        v4_dwa(w, a, d);
      }
      return;
    case Generation::v5: w.frame([&] { v5_dte(w, dte); }); return;
  }
}

void encode_position(const Dwa& pos, const Dialect& d, std::vector<std::uint8_t>& out) {
  Writer w{out};
  switch (d.gen) {
    case Generation::v1:
    case Generation::v2:
      w.scalar(pos.data.empty() ? f8_scalar(0) : first_as_scalar(pos.data[0]));
      return;
    case Generation::v4: v4_dwa(w, pos, d); return;
    case Generation::v5: w.frame([&] { v5_dwa(w, pos); }); return;
  }
}

void encode_path(const std::vector<std::string>& path, const Dialect& d, std::vector<std::uint8_t>& out) {
  Writer w{out};
  if (d.gen == Generation::v5) {
    w.frame([&] {
      v5_list_count(w, path.size());
      for (const auto& p : path) v5_str(w, p);
    });
    return;
  }
  w.u32(static_cast<std::uint32_t>(path.size()));
  for (const auto& p : path) {
    if (d.gen != Generation::v1) w.str("string");
    w.str(p);
  }
}

void encode_xml(std::string_view xml, bool as_bytes, const Dialect& d, std::vector<std::uint8_t>& out) {
  Writer w{out};
  if (d.gen == Generation::v5) {
    w.frame([&] {
      w.str(as_bytes ? "bytes" : "str");
      w.str(xml);
    });
  } else {
    w.str(xml);
  }
}

std::string can_carry(const Message& m, const Dialect& d) {
  if (d.gen != Generation::v1) return {};
  auto check = [](const Array& a) -> std::string {
    if (a.shape.empty() || a.shape.size() > 2) {
      return fmt::format("v1 carries arrays of 1 or 2 dimensions, not {}", a.shape.size());
    }
    return {};
  };
  if (m.data) {
    for (const Array* a : all_arrays(*m.data)) {
      if (auto s = check(*a); !s.empty()) return s;
    }
  }
  if (m.axis) return check(*m.axis);
  return {};
}

void encode(const Message& m, const Dialect& d, std::vector<std::uint8_t>& out) {
  if (m.command.empty() && m.object) {  // a stray v5 object, re-encoded as it came
    Writer w{out};
    if (d.gen == Generation::v5) w.frame([&] { v5_value(w, *m.object); });
    else v4_value(w, *m.object, d);
    return;
  }
  encode_string(m.command, d, out);
  switch (payload_of(m.command, d)) {
    case Payload::none:
    case Payload::unknown: return;
    case Payload::data: encode_data(m.data ? *m.data : Dte{}, d, out); return;
    case Payload::position: encode_position(m.position ? *m.position : Dwa{}, d, out); return;
    case Payload::path_xml:
      encode_path(m.path, d, out);
      encode_xml(m.xml, m.xml_bytes, d, out);
      return;
    case Payload::xml: encode_xml(m.xml, m.xml_bytes, d, out); return;
    case Payload::info: {
      Writer w{out};
      if (d.gen == Generation::v5) {
        encode_string(m.info_name, d, out);
        encode_string(m.info_value, d, out);
      } else if (d.gen == Generation::v1) {
        w.str(m.info_name);
        w.u32(8);
        std::uint8_t b[8];
        put_f64(b, std::strtod(m.info_value.c_str(), nullptr));
        w.raw(b, 8);
      } else {
        w.str(m.info_name);
        w.str(m.info_value);
      }
      return;
    }
    case Payload::axis: {
      Writer w{out};
      if (d.gen == Generation::v1) w.array_v1(m.axis ? *m.axis : Array{});
      else w.ndarray(m.axis ? *m.axis : Array{});
      w.str(m.axis_label);
      w.str(m.axis_units);
      return;
    }
  }
}

}  // namespace dl::pymodaq
