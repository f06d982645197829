#include "lib/codec/fastsocket.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

namespace dl::fastsocket {

namespace {

constexpr int kMaxDepth = 500;  // CPython's json gives up near its recursion limit too
const char* const kCtx = "fastSocket line";

Error bad(const char* id, std::string detail) { return protocol_error(id, kCtx, std::move(detail), false); }

void append_hex4(std::string& out, unsigned v) {
  static const char* hex = "0123456789abcdef";
  out += "\\u";
  for (int s = 12; s >= 0; s -= 4) out.push_back(hex[(v >> s) & 0xF]);
}

// Appends one code point the way json.dumps(ensure_ascii=True) does.
void append_escaped(std::string& out, std::uint32_t cp) {
  switch (cp) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    case '\b': out += "\\b"; return;
    case '\f': out += "\\f"; return;
    default: break;
  }
  if (cp >= 0x20 && cp <= 0x7E) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x10000) {
    append_hex4(out, cp);
  } else {
    cp -= 0x10000;
    append_hex4(out, 0xD800 | (cp >> 10));
    append_hex4(out, 0xDC00 | (cp & 0x3FF));
  }
}

// Decodes one UTF-8 sequence at s[i]; false on invalid input (overlongs, surrogates, > U+10FFFF).
bool utf8_next(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  int n;
  if (c < 0x80) {
    cp = c;
    ++i;
    return true;
  } else if ((c & 0xE0) == 0xC0) {
    n = 1;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3;
    cp = c & 0x07;
  } else {
    return false;
  }
  if (i + static_cast<std::size_t>(n) >= s.size()) return false;  // truncated sequence
  for (int k = 1; k <= n; ++k) {
    auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (d & 0x3F);
  }
  static const std::uint32_t min_for[4] = {0, 0x80, 0x800, 0x10000};
  if (cp < min_for[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += 1 + n;
  return true;
}

struct Parser {
  std::string_view s;
  std::size_t i = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool lit(std::string_view w) {
    if (s.substr(i, w.size()) != w) return false;
    i += w.size();
    return true;
  }
  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(std::uint32_t& v) {
    if (i + 4 > s.size()) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hexval(s[i + k]);
      if (h < 0) return false;
      v = v * 16 + static_cast<std::uint32_t>(h);
    }
    i += 4;
    return true;
  }

  // A string at s[i] == '"'. When `canon` is given, appends its json.dumps form (with quotes);
  // when `raw` is given, appends the decoded UTF-8 (for comparing keys).
  Status string(std::string* canon, std::string* raw) {
    ++i;  // opening quote
    if (canon) canon->push_back('"');
    while (true) {
      if (i >= s.size()) return bad("bad-json", "unterminated string");
      char c = s[i];
      std::uint32_t cp;
      if (c == '"') {
        ++i;
        break;
      }
      if (static_cast<unsigned char>(c) < 0x20) return bad("bad-json", "control character in a string");
      if (c == '\\') {
        if (i + 1 >= s.size()) return bad("bad-json", "unterminated escape");
        char e = s[i + 1];
        i += 2;
        switch (e) {
          case '"': cp = '"'; break;
          case '\\': cp = '\\'; break;
          case '/': cp = '/'; break;
          case 'b': cp = '\b'; break;
          case 'f': cp = '\f'; break;
          case 'n': cp = '\n'; break;
          case 'r': cp = '\r'; break;
          case 't': cp = '\t'; break;
          case 'u': {
            if (!hex4(cp)) return bad("bad-json", "bad \\u escape");
            // A high surrogate followed by an escaped low one is one character (as in Python);
            // a lone surrogate stays a lone surrogate.
            if (cp >= 0xD800 && cp <= 0xDBFF && s.substr(i, 2) == "\\u") {
              std::size_t save = i;
              i += 2;
              std::uint32_t lo;
              if (hex4(lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              } else {
                i = save;
              }
            }
            break;
          }
          default: return bad("bad-json", "bad escape");
        }
      } else {
        if (!utf8_next(s, i, cp)) return bad("bad-utf8", "invalid UTF-8");
      }
      if (canon) append_escaped(*canon, cp);
      if (raw) {
        if (cp < 0x80) {
          raw->push_back(static_cast<char>(cp));
        } else {
          raw->push_back('\x01');  // keys we look for are ASCII: anything else only must not match
        }
      }
    }
    if (canon) canon->push_back('"');
    return ok_status();
  }

  bool number(double* value, bool* integral) {
    std::size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    if (lit("Infinity")) {
      if (value) *value = s[start] == '-' ? -HUGE_VAL : HUGE_VAL;
      if (integral) *integral = false;
      return true;
    }
    if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) return false;
    if (s[i] == '0') {
      ++i;
    } else {
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    }
    bool integer = true;
    if (i < s.size() && s[i] == '.') {
      integer = false;
      ++i;
      if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) return false;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      integer = false;
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) return false;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    }
    if (integral) *integral = integer;
    if (value) {
      std::string text(s.substr(start, i - start));
      *value = std::strtod(text.c_str(), nullptr);
    }
    return true;
  }

  // An object member's key (skipped) and its ':', the cursor on the key's opening quote.
  Status key_and_colon() {
    if (i >= s.size() || s[i] != '"') return bad("bad-json", "object key must be a string");
    if (auto st = string(nullptr, nullptr); !st) return st;
    ws();
    if (i >= s.size() || s[i] != ':') return bad("bad-json", "expected ':'");
    ++i;
    return ok_status();
  }

  // Skips any JSON value (Python's extensions NaN, Infinity, -Infinity included), iteratively.
  Status skip_value() {
    std::vector<char> stack;  // '{' or '['
    bool expect_value = true;
    while (true) {
      ws();
      if (i >= s.size()) return bad("bad-json", "unexpected end of line");
      if (expect_value) {
        char c = s[i];
        if (c == '{' || c == '[') {
          if (stack.size() >= kMaxDepth) return bad("too-deep", "nesting deeper than 500");
          stack.push_back(c);
          ++i;
          ws();
          if (i < s.size() && s[i] == (c == '{' ? '}' : ']')) {
            ++i;
            stack.pop_back();
            expect_value = false;
            if (stack.empty()) return ok_status();
            continue;
          }
          if (c == '{') {
            if (auto st = key_and_colon(); !st) return st;
          }
          continue;
        }
        if (c == '"') {
          if (auto st = string(nullptr, nullptr); !st) return st;
        } else if (lit("true") || lit("false") || lit("null") || lit("NaN")) {
        } else if (!number(nullptr, nullptr)) {
          return bad("bad-json", "bad value");
        }
        expect_value = false;
        if (stack.empty()) return ok_status();
        continue;
      }
      // After a value inside a container: ',' or the closer.
      char c = s[i];
      char open = stack.back();
      if (c == ',') {
        ++i;
        expect_value = true;
        if (open == '{') {
          ws();
          if (auto st = key_and_colon(); !st) return st;
        }
        continue;
      }
      if (c == (open == '{' ? '}' : ']')) {
        ++i;
        stack.pop_back();
        if (stack.empty()) return ok_status();
        continue;
      }
      return bad("bad-json", "expected ',' or a closing bracket");
    }
  }
};

}  // namespace

Result<Frame> decode_line(std::string_view line) {
  if (line.size() + 1 > kMaxLine) return bad("line-too-long", "longer than 64 KiB");
  Parser p{line};
  Frame f;
  bool have_id = false, have_type = false, id_is_string = true;
  std::string type;
  p.ws();
  if (p.i >= line.size() || line[p.i] != '{') {
    // Any other JSON value parses in Python but is not a frame.
    if (auto st = p.skip_value(); !st) return st.error();
    return bad("not-object", "a frame is a JSON object");
  }
  ++p.i;
  p.ws();
  bool first = true;
  while (true) {
    if (p.i >= line.size()) return bad("bad-json", "unterminated object");
    if (line[p.i] == '}') {
      if (!first) return bad("bad-json", "trailing ','");
      ++p.i;
      break;
    }
    if (line[p.i] != '"') return bad("bad-json", "object key must be a string");
    std::string key;
    if (auto st = p.string(nullptr, &key); !st) return st.error();
    p.ws();
    if (p.i >= line.size() || line[p.i] != ':') return bad("bad-json", "expected ':'");
    ++p.i;
    p.ws();
    if (p.i >= line.size()) return bad("bad-json", "unexpected end of line");
    std::size_t vstart = p.i;
    if (key == "id" || key == "type") {
      if (line[p.i] == '"') {
        std::string canon, raw;
        if (auto st = p.string(&canon, &raw); !st) return st.error();
        if (key == "id") {
          f.id_json = std::move(canon);
          have_id = true;
          id_is_string = true;
        } else {
          type = std::move(raw);
          have_type = true;
        }
      } else {
        if (auto st = p.skip_value(); !st) return st.error();
        if (key == "id") {
          have_id = true;
          id_is_string = false;
        } else {
          type = "\x01";
          have_type = true;
        }
      }
    } else if (key == "send_and_ack_time_ns") {
      double v = 0;
      bool integral = false;
      std::size_t save = p.i;
      if (p.number(&v, &integral)) {
        if (!std::isfinite(v) || std::fabs(v) > 9.2e18) return bad("bad-time", "send_and_ack_time_ns out of range");
        if (integral) {
          std::int64_t iv = 0;
          auto text = line.substr(save, p.i - save);
          auto r = std::from_chars(text.data(), text.data() + text.size(), iv);
          if (r.ec != std::errc()) return bad("bad-time", "send_and_ack_time_ns out of range");
          f.send_and_ack_time_ns = iv;
        } else {
          f.send_and_ack_time_ns = std::llround(v);
        }
        f.has_time = true;
      } else {
        p.i = save;
        if (auto st = p.skip_value(); !st) return st.error();
        return bad("bad-time", "send_and_ack_time_ns is not a number");
      }
    } else {
      if (auto st = p.skip_value(); !st) return st.error();
      if (key == "payload") f.payload = line.substr(vstart, p.i - vstart);
    }
    first = false;
    p.ws();
    if (p.i >= line.size()) return bad("bad-json", "unterminated object");
    if (line[p.i] == ',') {
      ++p.i;
      p.ws();
      if (p.i < line.size() && line[p.i] == '}') return bad("bad-json", "trailing ','");
      continue;
    }
    if (line[p.i] == '}') {
      ++p.i;
      break;
    }
    return bad("bad-json", "expected ',' or '}'");
  }
  p.ws();
  if (p.i != line.size()) return bad("bad-json", "extra data after the object");
  if (!have_id) return bad("missing-id", "no \"id\"");
  if (!id_is_string) return bad("bad-id", "\"id\" is not a string");
  if (!have_type) return bad("bad-type", "no \"type\"");
  if (type == "message") {
    f.type = Type::message;
    // Only the client's ack carries T1; a message that has one is taken for what it says it
    // is, and the stray field is ignored (fastSocket ignores unknown keys too).
    f.has_time = false;
    f.send_and_ack_time_ns = 0;
  } else if (type == "ack") {
    f.type = Type::ack;
  } else {
    return bad("bad-type", "\"type\" is neither \"message\" nor \"ack\"");
  }
  return f;
}

void append_message(std::string& out, std::string_view id_json, std::string_view payload_json) {
  out += "{\"id\": ";
  out += id_json;
  out += ", \"type\": \"message\", \"payload\": ";
  out += payload_json;
  out += "}\n";
}

void append_server_ack(std::string& out, std::string_view id_json) {
  out += "{\"id\": ";
  out += id_json;
  out += ", \"type\": \"ack\"}\n";
}

void append_client_ack(std::string& out, std::string_view id_json, std::int64_t t1_ns) {
  out += "{\"id\": ";
  out += id_json;
  out += ", \"type\": \"ack\", \"send_and_ack_time_ns\": ";
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, t1_ns);
  out.append(buf, r.ptr);
  out += "}\n";
}

std::string json_string(std::string_view utf8) {
  std::string out = "\"";
  std::size_t i = 0;
  while (i < utf8.size()) {
    std::uint32_t cp;
    if (!utf8_next(utf8, i, cp)) {
      cp = 0xFFFD;
      ++i;
    }
    append_escaped(out, cp);
  }
  out.push_back('"');
  return out;
}

std::string uuid4_text(std::span<const std::uint8_t, 16> r) {
  std::uint8_t b[16];
  std::memcpy(b, r.data(), 16);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int k = 0; k < 16; ++k) {
    if (k == 4 || k == 6 || k == 8 || k == 10) out.push_back('-');
    out.push_back(hex[b[k] >> 4]);
    out.push_back(hex[b[k] & 0xF]);
  }
  return out;
}

}  // namespace dl::fastsocket
