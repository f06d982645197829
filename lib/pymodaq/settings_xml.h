// settings_xml: the little of pyqtgraph's Parameter XML the emulators need: build one
// parameter element (`<units type="str" title="units" ...>mm</units>`), a settings group of
// them (what a client sends after Infos), and find a parameter's text by name. Not an XML
// parser: no entities beyond the five predefined ones, no attributes read back.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dl::pymodaq {

struct Param {
  std::string name, type, value;  // type: "str", "float", "int", "bool", "list"...
};

std::string param_xml(const Param& p);
std::string settings_xml(const std::vector<Param>& params, std::string_view root = "Settings");
// The text of the first element named `name` ("<name ...>text</name>"), unescaped.
std::optional<std::string> find_param(std::string_view xml, std::string_view name);
// The name of the first element ("units" for "<units type=..>mm</units>").
std::string first_element(std::string_view xml);
// "float" when text reads as a number, else "str".
std::string guess_type(std::string_view text);

}  // namespace dl::pymodaq
