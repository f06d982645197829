#include "lib/pymodaq/settings_xml.h"

#include "lib/base/xml_escape.h"

#include <cstdlib>

namespace dl::pymodaq {

namespace {

std::string unescape(std::string_view s) {
  std::string o;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      static const std::pair<std::string_view, char> ents[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool done = false;
      for (auto [e, c] : ents) {
        if (s.substr(i, e.size()) == e) {
          o += c;
          i += e.size() - 1;
          done = true;
          break;
        }
      }
      if (done) continue;
    }
    o += s[i];
  }
  return o;
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

}  // namespace

std::string param_xml(const Param& p) {
  return "<" + p.name + " type=\"" + xml_escape(p.type) + "\" title=\"" + xml_escape(p.name) +
         "\" visible=\"1\" removable=\"0\" readonly=\"0\">" + xml_escape(p.value) + "</" + p.name + ">";
}

std::string settings_xml(const std::vector<Param>& params, std::string_view root) {
  std::string o = "<" + std::string(root) + " type=\"group\" title=\"" + std::string(root) + "\">";
  for (const auto& p : params) o += param_xml(p);
  o += "</" + std::string(root) + ">";
  return o;
}

std::optional<std::string> find_param(std::string_view xml, std::string_view name) {
  std::string open = "<" + std::string(name);
  std::size_t at = 0;
  while ((at = xml.find(open, at)) != std::string_view::npos) {
    std::size_t after = at + open.size();
    if (after < xml.size() && !name_char(xml[after])) {
      std::size_t gt = xml.find('>', after);
      if (gt == std::string_view::npos) return std::nullopt;
      if (xml[gt - 1] == '/') return std::string();
      std::size_t close = xml.find("</" + std::string(name) + ">", gt);
      if (close == std::string_view::npos) return std::nullopt;
      return unescape(xml.substr(gt + 1, close - gt - 1));
    }
    at = after;
  }
  return std::nullopt;
}

std::string first_element(std::string_view xml) {
  std::size_t at = xml.find('<');
  while (at != std::string_view::npos && at + 1 < xml.size() && (xml[at + 1] == '?' || xml[at + 1] == '!')) {
    at = xml.find('<', at + 1);
  }
  if (at == std::string_view::npos) return {};
  std::size_t end = at + 1;
  while (end < xml.size() && name_char(xml[end])) ++end;
  return std::string(xml.substr(at + 1, end - at - 1));
}

std::string guess_type(std::string_view text) {
  std::string t(text);
  char* end = nullptr;
  std::strtod(t.c_str(), &end);
  return !t.empty() && end == t.c_str() + t.size() ? "float" : "str";
}

}  // namespace dl::pymodaq
