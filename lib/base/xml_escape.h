// xml_escape: text made safe for XML 1.0 element content and attribute values (&, <, >, "
// escaped; control characters other than tab and newline, which XML 1.0 forbids, become '?').
// For the family's small XML writers (dlping's SVG plot, pymodaq-emu's settings); not a parser.
#pragma once

#include <string>
#include <string_view>

namespace dl {

inline std::string xml_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default:
        o += static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' ? '?' : c;
    }
  }
  return o;
}

}  // namespace dl
