// Byte-exact tests of the PyMoDAQ codecs against every golden file PyMoDAQ itself encoded
// (testdata/pymodaq/, one folder per generation), plus the v4 minor layouts, truncation at
// every byte, and bad input that must be named with its field and offset.
#include "lib/codec/pymodaq_codec.h"

#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

using namespace dl::pymodaq;
using Bytes = std::vector<std::uint8_t>;

namespace {

const char* kInfosXml =
    "<Settings type=\"group\" title=\"Settings\"><units type=\"str\" title=\"Units:\">mm</units>"
    "<npts type=\"int\" title=\"Npts:\">16</npts></Settings>";
constexpr double kTs = 1700000000.0;

struct Gen {
  const char* folder;
  const char* prefix;
  const char* dialect;
  bool has_nd;
};
const Gen kGens[] = {
    {"v2.0.0", "v1", "v1", false},
    {"v4.0.11", "v2", "v2", true},
    {"v4.4.5", "v4", "v4", true},
    {"v5.0.x", "v5", "v5", true},
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
Bytes golden(const Gen& g, const std::string& what) {
  std::string s = read_text(std::string("testdata/pymodaq/") + g.folder + "/" + g.prefix + "_" + what + ".bin");
  return Bytes(s.begin(), s.end());
}
Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Dialect dialect(const char* d) { return *parse_dialect(d); }

// make_arrays() of the golden generator: 0D [1.25], 1D 0.1*i (16), 2D arange(12) 3x4, ND 2x3x4.
Array golden_array(const std::string& dim) {
  std::vector<double> v;
  if (dim == "0D") return make_array("<f8", {1}, std::vector<double>{1.25}.data());
  if (dim == "1D") {
    for (int i = 0; i < 16; ++i) v.push_back(i * 0.1);
    return make_array("<f8", {16}, v.data());
  }
  int n = dim == "2D" ? 12 : 24;
  for (int i = 0; i < n; ++i) v.push_back(i);
  return dim == "2D" ? make_array("<f8", {3, 4}, v.data()) : make_array("<f8", {2, 3, 4}, v.data());
}

Dte golden_dte(const std::string& dim) {
  Dte t;
  t.timestamp = kTs;
  t.name = "pymodaq_peer";
  Dwa a;
  a.cls = "DataRaw";
  a.timestamp = kTs;
  a.name = "pymodaq_peer";
  a.dim = "Data" + dim;
  a.data.push_back(golden_array(dim));
  a.labels = {"CH00"};
  a.origin = "pymodaq_peer";
  t.data.push_back(a);
  return t;
}

Decoded decode_all(const Bytes& b, const Dialect& d) {
  Decoded r = decode(std::span<const std::uint8_t>(b), d);
  if (r.status == DecodeStatus::bad) MESSAGE("bad: " << r.field << " @" << r.offset << ": " << r.detail);
  REQUIRE(r.status == DecodeStatus::message);
  CHECK(r.consumed == b.size());
  return r;
}

// Every strict prefix asks for more (never a message, never an error) and says how much.
void check_prefixes(const Bytes& b, const Dialect& d) {
  for (std::size_t n = 0; n < b.size(); ++n) {
    Decoded r = decode(std::span<const std::uint8_t>(b.data(), n), d);
    INFO("prefix " << n << " of " << b.size());
    REQUIRE(r.status == DecodeStatus::need_more);
    CHECK(r.needed > n);
    CHECK(r.needed <= b.size());
  }
}

}  // namespace

TEST_CASE("every file a manifest lists is covered by this test") {
  for (const Gen& g : kGens) {
    std::string m = read_text(std::string("testdata/pymodaq/") + g.folder + "/" + g.prefix + "_manifest.json");
    std::set<std::string> covered;
    for (const char* w : {"str_GRABBER", "str_ACTUATOR", "str_Done", "str_Send_Data_2D", "str_move_done",
                          "xml_Infos", "path_settings_units", "position_1p25", "data_0D", "data_1D", "data_2D", "data_ND"}) {
      covered.insert(std::string(g.prefix) + "_" + w + ".bin");
    }
    std::size_t at = 0, files = 0;
    while ((at = m.find("\"file\": \"", at)) != std::string::npos) {
      at += 9;
      std::string f = m.substr(at, m.find('"', at) - at);
      CHECK_MESSAGE(covered.count(f) == 1, f << " is in the manifest but not tested");
      ++files;
    }
    CHECK(files >= 11);
  }
}

TEST_CASE("golden strings, XML and paths: encode byte for byte, decode back") {
  for (const Gen& g : kGens) {
    Dialect d = dialect(g.dialect);
    INFO(g.dialect);
    for (const char* s : {"GRABBER", "ACTUATOR", "Done", "Send Data 2D", "move_done"}) {
      std::string file = std::string("str_") + s;
      for (auto& c : file) if (c == ' ') c = '_';
      Bytes want = golden(g, file);
      Bytes got;
      encode_string(s, d, got);
      CHECK(got == want);
      if (std::string(s) != "Done" && std::string(s) != "move_done") {  // those need a payload
        Decoded r = decode_all(want, d);
        CHECK(r.message.command == s);
        check_prefixes(want, d);
      }
    }
    Bytes xml = golden(g, "xml_Infos"), got;
    encode_xml(kInfosXml, false, d, got);
    CHECK(got == xml);
    Bytes infos;
    encode_string("Infos", d, infos);
    Bytes msg = cat(infos, xml);
    Decoded r = decode_all(msg, d);
    CHECK(r.message.command == "Infos");
    CHECK(r.message.xml == kInfosXml);
    Bytes again;
    encode(r.message, d, again);
    CHECK(again == msg);
    check_prefixes(msg, d);

    Bytes path = golden(g, "path_settings_units");
    got.clear();
    encode_path({"settings_client", "units"}, d, got);
    CHECK(got == path);
    Bytes head;
    encode_string("Info_xml", d, head);
    msg = cat(cat(head, path), xml);
    r = decode_all(msg, d);
    CHECK(r.message.path == std::vector<std::string>{"settings_client", "units"});
    CHECK(r.message.xml == kInfosXml);
    again.clear();
    encode(r.message, d, again);
    CHECK(again == msg);
    check_prefixes(msg, d);
  }
}

TEST_CASE("golden positions: scalar (v1, v2) and DataActuator (v4, v5)") {
  for (const Gen& g : kGens) {
    Dialect d = dialect(g.dialect);
    INFO(g.dialect);
    Bytes want = golden(g, "position_1p25");
    Message m = position_message("move_done", 1.25, "", kTs);
    Bytes got;
    encode_position(*m.position, d, got);
    CHECK(got == want);
    Bytes msg = cat(golden(g, "str_move_done"), want);
    Decoded r = decode_all(msg, d);
    CHECK(r.message.command == "move_done");
    CHECK(position_value(r.message) == 1.25);
    if (d.gen == Generation::v4 || d.gen == Generation::v5) {
      CHECK(r.message.position->cls == "DataActuator");
      CHECK(r.message.position->timestamp == kTs);
      CHECK(r.message.position->labels == std::vector<std::string>{"CH00"});
    }
    Bytes again;
    encode(r.message, d, again);
    CHECK(again == msg);
    check_prefixes(msg, d);
  }
}

TEST_CASE("golden data after Done, every dimension") {
  for (const Gen& g : kGens) {
    Dialect d = dialect(g.dialect);
    for (const char* dim : {"0D", "1D", "2D", "ND"}) {
      if (!g.has_nd && std::string(dim) == "ND") continue;
      INFO(g.dialect << " " << dim);
      Bytes want = golden(g, std::string("data_") + dim);
      Bytes got;
      encode_data(golden_dte(dim), d, got);
      CHECK(got == want);
      Bytes msg = cat(golden(g, "str_Done"), want);
      Decoded r = decode_all(msg, d);
      REQUIRE(r.message.data);
      REQUIRE(r.message.data->data.size() == 1);
      const Array& a = r.message.data->data[0].data.at(0);
      CHECK(a.bytes == golden_array(dim).bytes);
      CHECK(a.shape == golden_array(dim).shape);
      CHECK(r.message.data->data[0].dim == std::string("Data") + dim);
      Bytes again;
      encode(r.message, d, again);
      CHECK(again == msg);
      check_prefixes(msg, d);
    }
  }
}

TEST_CASE("v4 minor layouts: DataActuator(1.5) is 149/153/157/161 bytes and each reads back") {
  const std::pair<const char*, std::size_t> layouts[] = {{"4.1.0", 149}, {"4.1.3", 153}, {"4.2", 157}, {"4.4", 161}};
  for (auto [v, size] : layouts) {
    Dialect d = dialect(v);
    Message m = position_message("move_abs", 1.5, "", 1.7e9);
    Bytes b;
    encode_position(*m.position, d, b);
    CHECK_MESSAGE(b.size() == size, v);
    m.position->units = "mm";
    b.clear();
    encode(m, d, b);
    Decoded r = decode_all(b, d);
    CHECK(position_value(r.message) == 1.5);
    CHECK(r.message.position->units == (d.v4_units() ? "mm" : ""));
  }
  // The layouts are not compatible: a 4.4 reader refuses a 4.1.0 writer, naming a field.
  Message m = position_message("move_abs", 1.5, "", 1.7e9);
  Bytes b;
  encode(m, dialect("4.1.0"), b);
  Bytes tail(200, 0);  // enough bytes that "need more" is not the answer
  Decoded r = decode(std::span<const std::uint8_t>(cat(b, tail)), dialect("4.4"));
  CHECK(r.status == DecodeStatus::bad);
}

TEST_CASE("v5 examples from the notes: Done is 19 bytes, DataActuator(1.5) 263") {
  Bytes b;
  encode_string("Done", dialect("v5"), b);
  // Done without its data: the decoder waits for the DataToExport frame.
  CHECK(decode(std::span<const std::uint8_t>(b), dialect("v5")).status == DecodeStatus::need_more);
  CHECK(b.size() == 19);
  b.clear();
  encode_position(*position_message("move_abs", 1.5, "", 1.7e9).position, dialect("v5"), b);
  CHECK(b.size() == 263);
}

TEST_CASE("dialect names") {
  CHECK(dialect("v1").gen == Generation::v1);
  CHECK(dialect("2.0.0").gen == Generation::v1);
  CHECK(dialect("2.0.1").gen == Generation::v2);
  CHECK(dialect("3.6.2").query_command() == "check_position");
  CHECK(dialect("3.6.3").query_command() == "get_actuator_value");
  CHECK(dialect("v2").query_command() == "get_actuator_value");
  CHECK(dialect("v1").query_command() == "check_position");
  CHECK(dialect("4.1.2").v4_minor == 410);
  CHECK(dialect("4.1.5").v4_minor == 413);
  CHECK(dialect("v4.3.1").v4_minor == 420);
  CHECK(dialect("4.4.5").v4_minor == 440);
  CHECK(dialect("v4").v4_minor == 440);
  CHECK(dialect("5.0.1").gen == Generation::v5);
  for (const char* n : {"v1", "v2", "v2-3.6.2", "v4-4.1.0", "v4-4.1.3", "v4-4.2", "v4", "v5"}) {
    CHECK(dialect(n).name() == n);
  }
  CHECK_FALSE(parse_dialect("v6"));
  CHECK_FALSE(parse_dialect("1.5.0"));
  CHECK_FALSE(parse_dialect("6.0"));
  CHECK_FALSE(parse_dialect("4.x"));
}

TEST_CASE("any numpy dtype: big-endian, one-byte, complex, half") {
  for (const char* dt : {"<f8", ">f8", "<f4", ">f4", "<f2", "|u1", "|i1", "|b1", "<u2", ">i2", "<i4", ">u4", "<i8", ">i8", "<c16", ">c8"}) {
    double v[4] = {1, -2, 3.5, 250};
    Array a = make_array(dt, {2, 2}, v);
    auto t = parse_dtype(dt);
    REQUIRE(t);
    CHECK(a.bytes.size() == 4 * t->itemsize);
    INFO(dt);
    CHECK(a.at(0, *t) == 1);
    if (t->kind == 'f' || t->kind == 'c' || (t->kind == 'i')) CHECK(a.at(1, *t) == (t->kind == 'i' ? -2 : -2.0));
    if (t->kind == 'f' || t->kind == 'c') CHECK(a.at(2, *t) == 3.5);
    for (const char* g : {"v2", "v4", "v5"}) {
      Message m = command_message("Done");
      Dte dte;
      Dwa w;
      w.data.push_back(a);
      w.labels = {"CH00"};
      w.dim = "Data2D";
      dte.data.push_back(w);
      m.data = dte;
      Bytes b;
      encode(m, dialect(g), b);
      Decoded r = decode_all(b, dialect(g));
      CHECK(r.message.data->data[0].data[0].dtype == dt);
      CHECK(r.message.data->data[0].data[0].bytes == a.bytes);
    }
  }
  CHECK(parse_dtype("<M8[ns]"));
  CHECK(parse_dtype("|S10")->itemsize == 10);
  CHECK(parse_dtype("<U3")->itemsize == 12);
  CHECK_FALSE(parse_dtype("<f3"));
  CHECK_FALSE(parse_dtype("<x8"));
  CHECK_FALSE(parse_dtype("<f"));
  CHECK_FALSE(parse_dtype("<f8junk"));
}

TEST_CASE("bad input names the field and its byte offset") {
  Dialect v4 = dialect("v4");
  Bytes b;
  encode(position_message("move_abs", 2.0, "mm", kTs), v4, b);
  // The DWA's timestamp dtype sits after "move_abs" (12 bytes) and "DataActuator" (16): offset 28.
  Bytes bad = b;
  bad[32] = 'x';  // "<f8" -> "xf8"
  Decoded r = decode(std::span<const std::uint8_t>(bad), v4, {}, 1000);
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.id == "bad-dtype");
  CHECK(r.field == "timestamp dtype");
  CHECK(r.offset == 1028);
  std::string msg = decode_error(r, "decode").message();
  CHECK(msg.find("byte 1028") != std::string::npos);

  // An absurd array size is refused before anyone waits for it.
  Bytes big;
  encode_string("Done", dialect("v2"), big);
  for (int x : std::initializer_list<int>{0, 0, 0, 1, 0, 0, 0, 5, 'a', 'r', 'r', 'a', 'y', 0, 0, 0, 3, '<', 'f', '8', 0xff, 0xff, 0xff, 0xf0}) big.push_back(static_cast<std::uint8_t>(x));
  Limits lim;
  lim.max_message = 1 << 20;
  r = decode(std::span<const std::uint8_t>(big), dialect("v2"), lim);
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.too_large);
  CHECK(r.field == "data array nbytes");
  CHECK(r.offset == 28);
  CHECK(decode_error(r, "x").kind == dl::ErrorKind::too_large);

  // Shape and byte count that disagree.
  Bytes shape;
  encode_string("Done", dialect("v2"), shape);
  Dte t = golden_dte("2D");
  Bytes data;
  encode_data(t, dialect("v2"), data);
  data[31] = 5;  // first dimension 3 -> 5
  r = decode(std::span<const std::uint8_t>(cat(shape, data)), dialect("v2"));
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.id == "bad-shape");

  // A wrong list tag (v2 desynchronises there; we stop and say where).
  Bytes tag = cat(golden(kGens[1], "str_Done"), golden(kGens[1], "data_0D"));
  tag[8 + 8] = 'X';  // "array" -> "Xrray"
  r = decode(std::span<const std::uint8_t>(tag), dialect("v2"));
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.id == "bad-tag");
  CHECK(r.offset == 12);

  // A command length out of step.
  Bytes garbage = {0x3c, 0x66, 0x38, 0x00, 1, 2, 3};
  r = decode(std::span<const std::uint8_t>(garbage), v4);
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.field == "command length");
  CHECK(r.offset == 0);

  // v5: a frame whose object is shorter than the frame.
  Bytes f = golden(kGens[3], "str_GRABBER");
  f[3] += 2;
  f.push_back(0);
  f.push_back(0);
  r = decode(std::span<const std::uint8_t>(f), dialect("v5"));
  REQUIRE(r.status == DecodeStatus::bad);
  CHECK(r.field == "command frame length");
}

TEST_CASE("unknown commands: v1-v4 report them and read on; v5 keeps step by frame length") {
  for (const char* g : {"v1", "v2", "v4", "v5"}) {
    Dialect d = dialect(g);
    Bytes b;
    encode_string("frobnicate", d, b);
    encode_string("Send Data 1D", d, b);
    Decoded r = decode(std::span<const std::uint8_t>(b), d);
    REQUIRE(r.status == DecodeStatus::message);
    CHECK(payload_of(r.message.command, d) == Payload::unknown);
    r = decode(std::span<const std::uint8_t>(b).subspan(r.consumed), d);
    REQUIRE(r.status == DecodeStatus::message);
    CHECK(r.message.command == "Send Data 1D");
  }
  // v5: an unknown command's payload (a float) arrives as an object of its own.
  Dialect v5 = dialect("v5");
  Bytes b;
  encode_string("frobnicate", v5, b);
  Message obj;
  Value v;
  v.kind = Value::Kind::scalar;
  v.pytype = "float";
  v.scalar = f8_scalar(3.0);
  obj.object = v;
  encode(obj, v5, b);
  encode_string("Quit", v5, b);
  std::span<const std::uint8_t> s(b);
  Decoded r = decode(s, v5);
  REQUIRE(r.status == DecodeStatus::message);
  s = s.subspan(r.consumed);
  r = decode(s, v5);
  REQUIRE(r.status == DecodeStatus::message);
  CHECK(r.message.command.empty());
  REQUIRE(r.message.object);
  CHECK(r.message.object->scalar.as_double() == 3.0);
  s = s.subspan(r.consumed);
  r = decode(s, v5);
  REQUIRE(r.status == DecodeStatus::message);
  CHECK(r.message.command == "Quit");
}

TEST_CASE("Info: v1 raw big-endian float64, later two strings; set_info, x_axis") {
  for (const char* g : {"v1", "v2", "v4", "v5"}) {
    Dialect d = dialect(g);
    Message m = command_message("Info");
    m.info_name = "exposure";
    m.info_value = "0.25";
    Bytes b;
    encode(m, d, b);
    Decoded r = decode_all(b, d);
    CHECK(r.message.info_name == "exposure");
    CHECK(std::stod(r.message.info_value) == 0.25);
    Message s = command_message("set_info");
    s.path = {"units"};
    s.xml = "<units type=\"str\">um</units>";
    s.xml_bytes = d.gen == Generation::v5;
    b.clear();
    encode(s, d, b);
    r = decode_all(b, d);
    CHECK(r.message.path == s.path);
    CHECK(r.message.xml == s.xml);
    CHECK(r.message.xml_bytes == s.xml_bytes);
    check_prefixes(b, d);
  }
  for (const char* g : {"v1", "v2"}) {
    Message m = command_message("x_axis");
    double v[3] = {0, 1, 2};
    m.axis = make_array("<f8", {3}, v);
    m.axis_label = "x";
    m.axis_units = "px";
    Bytes b;
    encode(m, dialect(g), b);
    Decoded r = decode_all(b, dialect(g));
    CHECK(r.message.axis->bytes == m.axis->bytes);
    CHECK(r.message.axis_units == "px");
  }
}

TEST_CASE("DataWithAxes with axes, nav indexes, errors and extra attributes round-trips") {
  for (const char* g : {"4.1.3", "4.2", "v4", "v5"}) {
    Dialect d = dialect(g);
    Dte t = golden_dte("1D");
    Dwa& a = t.data[0];
    double xs[16];
    for (int i = 0; i < 16; ++i) xs[i] = i;
    a.axes.push_back(Axis{"x", "px", make_array("<f8", {16}, xs), 0, 0});
    a.nav_indexes = {0};
    if (d.v4_errors() || d.gen == Generation::v5) a.errors.push_back(golden_array("1D"));
    Value v;
    v.kind = Value::Kind::list;
    Value s;
    s.kind = Value::Kind::str;
    s.text = "hello";
    v.items.push_back(s);
    a.extra.emplace_back("note", v);
    Message m = command_message("Done");
    m.data = t;
    Bytes b;
    encode(m, d, b);
    Decoded r = decode_all(b, d);
    const Dwa& x = r.message.data->data[0];
    CHECK(x.axes.size() == 1);
    CHECK(x.axes[0].units == "px");
    CHECK(x.nav_indexes == std::vector<std::int64_t>{0});
    CHECK(x.extra.size() == 1);
    CHECK(x.extra[0].second.items.at(0).text == "hello");
    Bytes again;
    encode(r.message, d, again);
    CHECK(again == b);
  }
}
