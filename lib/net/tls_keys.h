// tls_keys: the text forms of key material the family reads: pre-shared key files and --pin
// values (dl-security(7)). Pure: no OpenSSL, no I/O, so they are tested and fuzzed alone; the
// files themselves are read (and their permissions checked) by TlsConfig.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"

namespace dl {

inline constexpr const char* kDefaultPskIdentity = "datalink";

struct PskKey {
  std::string identity;           // default kDefaultPskIdentity
  std::vector<std::uint8_t> key;  // 16 to 48 bytes
};

// One line `[IDENTITY ]KEY` (KEY hex or base64), blank lines and '#' comments ignored.
// Errors: auth, context "--psk PATH", naming what is wrong.
Result<PskKey> parse_psk_text(std::string_view text, const std::string& path);

// 32 bytes from "sha256:BASE64", "sha256//BASE64", 64 hex digits (colons allowed) or base64.
// Errors: usage, context "--pin TEXT".
Result<std::vector<std::uint8_t>> parse_pin_text(std::string text);

std::string to_hex(std::span<const std::uint8_t> bytes);

// The errors of key handling: auth (final: the same keys will fail again) and usage.
Error auth_error(std::string context, std::string detail, std::string id = {});
Error usage_error(std::string context, std::string detail);

}  // namespace dl
