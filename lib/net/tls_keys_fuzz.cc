// Fuzz target for the key text formats: a pre-shared key file's content and a --pin value.
// Whatever the bytes, the parsers return a key of the documented size or an error, never crash.
// fuzz-sources: lib/net/tls_keys.cc lib/base/error.cc
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "lib/net/tls_keys.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto psk = dl::parse_psk_text(text, "fuzz.psk");
  if (psk && (psk->key.size() < 16 || psk->key.size() > 48 || psk->identity.empty())) std::abort();
  auto pin = dl::parse_pin_text(text);
  if (pin && pin->size() != 32) std::abort();
  return 0;
}
