#include "lib/pymodaq/json.h"

#include <doctest/doctest.h>

#include "lib/pymodaq/settings_xml.h"

using namespace dl::pymodaq;

TEST_CASE("JSON lines: commands, positions, data summaries and full values") {
  Dialect v4 = *parse_dialect("v4");
  CHECK(message_json(command_message("Send Data 2D"), v4) == "{\"command\":\"Send Data 2D\"}");
  Message p = position_message("move_done", 1.25, "mm", 1.7e9);
  CHECK(message_json(p, v4) == "{\"command\":\"move_done\",\"position\":1.25,\"units\":\"mm\",\"class\":\"DataActuator\",\"timestamp\":1700000000}");
  CHECK(message_json(p, *parse_dialect("v1")) == "{\"command\":\"move_done\",\"position\":1.25,\"dtype\":\"<f8\"}");
  Message d = command_message("Done");
  Dte t;
  Dwa w;
  double v[3] = {1, 2, 6};
  w.data.push_back(make_array("<f8", {3}, v));
  w.labels = {"CH00"};
  w.dim = "Data1D";
  t.data.push_back(w);
  d.data = t;
  std::string s = message_json(d, v4, {true, 10, 99});
  CHECK(s.find("\"offset\":10,\"bytes\":99,") == 1);
  CHECK(s.find("\"min\":1,\"max\":6,\"mean\":3,\"values\":[1,2,6]") != std::string::npos);
  CHECK(message_json(command_message("bogus"), v4) == "{\"command\":\"bogus\",\"unknown\":true}");
}

TEST_CASE("strings are escaped, invalid UTF-8 included") {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\x01\xff\xc3\xa9", 10));
  CHECK(out == "\"a\\\"b\\\\c\\n\\u0001\\u00ff\xc3\xa9\"");
}

TEST_CASE("settings XML: build, find, first element") {
  std::string x = settings_xml({{"units", "str", "mm"}, {"velocity", "float", "2.5"}});
  CHECK(find_param(x, "units") == "mm");
  CHECK(find_param(x, "velocity") == "2.5");
  CHECK_FALSE(find_param(x, "unit"));
  CHECK(first_element(param_xml({"units", "str", "a<b"})) == "units");
  CHECK(find_param(param_xml({"units", "str", "a<b"}), "units") == "a<b");
  CHECK(guess_type("1.5e3") == "float");
  CHECK(guess_type("mm") == "str");
}
