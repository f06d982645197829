#include "lib/net/tls_keys.h"

#include <cctype>
#include <cstring>
#include <optional>

namespace dl {
namespace {

constexpr std::size_t kMinPsk = 16, kMaxPsk = 48;  // 48: OpenSSL's limit for a session key

std::string hex_text(std::span<const std::uint8_t> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (auto c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

std::optional<std::vector<std::uint8_t>> from_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < s.size(); i += 2) {
    int a = v(s[i]), b = v(s[i + 1]);
    if (a < 0 || b < 0) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(a * 16 + b));
  }
  return out;
}

// Standard or URL-safe alphabet, padding optional.
std::optional<std::vector<std::uint8_t>> from_base64(std::string_view s) {
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  std::vector<std::uint8_t> out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+' || c == '-') v = 62;
    else if (c == '/' || c == '_') v = 63;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(acc >> bits));
    }
  }
  if (bits >= 6) return std::nullopt;  // a dangling character
  return out;
}

std::optional<std::vector<std::uint8_t>> hex_or_base64(std::string_view s) {
  if (auto h = from_hex(s)) return h;
  return from_base64(s);
}

}  // namespace

Error auth_error(std::string context, std::string detail, std::string id) {
  Error e = make_error(ErrorKind::auth, std::move(context), std::move(detail));
  e.id = std::move(id);
  e.final = true;
  return e;
}

Error usage_error(std::string context, std::string detail) {
  return make_error(ErrorKind::usage, std::move(context), std::move(detail));
}

std::string to_hex(std::span<const std::uint8_t> bytes) { return hex_text(bytes); }

Result<PskKey> parse_psk_text(std::string_view text, const std::string& path) {
  std::string ctx = "--psk " + path;
  std::size_t pos = 0;
  std::optional<PskKey> found;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line(text.substr(pos, end - pos));
    pos = end + 1;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line.erase(0, first);
    if (found) return auth_error(ctx, "more than one key line (one line: [IDENTITY ]KEY)");
    PskKey f;
    f.identity = kDefaultPskIdentity;
    std::string key = line;
    std::size_t sp = line.find_first_of(" \t");
    if (sp != std::string::npos) {
      f.identity = line.substr(0, sp);
      key = line.substr(line.find_first_not_of(" \t", sp));
      if (key.find_first_of(" \t") != std::string::npos) {
        return auth_error(ctx, "expected one line: [IDENTITY ]KEY, with no spaces in either");
      }
      for (char c : f.identity) {
        if (c < 0x21 || c > 0x7e) return auth_error(ctx, "the identity must be printable ASCII");
      }
      if (f.identity.size() > 128) return auth_error(ctx, "the identity is longer than 128 characters");
    }
    auto bytes = hex_or_base64(key);
    if (!bytes) return auth_error(ctx, "the key is neither hex nor base64");
    if (bytes->size() < kMinPsk || bytes->size() > kMaxPsk) {
      return auth_error(ctx, "the key has " + std::to_string(bytes->size()) +
                                 " bytes; it must have 16 to 48 (32 recommended: --gen-psk)");
    }
    f.key = std::move(*bytes);
    found = std::move(f);
    if (end == text.size()) break;
  }
  if (!found) return auth_error(ctx, "no key in the file (one line: [IDENTITY ]KEY)");
  return std::move(*found);
}

Result<std::vector<std::uint8_t>> parse_pin_text(std::string text) {
  std::string ctx = "--pin " + text;
  for (const char* prefix : {"sha256:", "sha256//", "SHA256:"}) {
    if (text.rfind(prefix, 0) == 0) text.erase(0, std::strlen(prefix));
  }
  std::string compact;
  for (char c : text) {
    if (c != ':') compact += c;
  }
  auto bytes = hex_or_base64(compact);
  if (!bytes || bytes->size() != 32) {
    return usage_error(ctx, "expected the SHA-256 of the peer's public key, as 64 hex digits or base64 (see dl-security(7))");
  }
  return std::move(*bytes);
}

}  // namespace dl
