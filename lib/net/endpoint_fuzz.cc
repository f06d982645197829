// libFuzzer target for the user-typed address grammars: endpoints (dial and listen) and
// --allow specs. Built and run by scripts/fuzz (not part of the Bazel build).
// fuzz-sources: lib/net/endpoint.cc lib/net/allow_list.cc lib/base/error.cc
// Invariants are checked with __builtin_trap() so they hold under NDEBUG too: a parse either
// fails with a usage error naming the text, or gives an endpoint whose canonical text parses
// back to the same endpoint.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/net/allow_list.h"
#include "lib/net/endpoint.h"

#define FUZZ_CHECK(cond)             \
  do {                               \
    if (!(cond)) __builtin_trap();   \
  } while (0)

namespace {

void check(std::string_view text, bool listen) {
  auto ep = listen ? dl::parse_listen_endpoint(text) : dl::parse_dial_endpoint(text);
  if (!ep) {
    FUZZ_CHECK(ep.error().kind == dl::ErrorKind::usage);
    FUZZ_CHECK(!ep.error().detail.empty());
    FUZZ_CHECK(ep.error().message().find('\n') == std::string::npos || text.find('\n') != std::string_view::npos);
    return;
  }
  if (ep->kind != dl::Endpoint::Kind::unix_socket) FUZZ_CHECK(listen || ep->port != 0);
  if (ep->kind != dl::Endpoint::Kind::unix_socket && ep->host.empty()) return;  // "*:P" is output only
  std::string canon = ep->to_string();
  auto again = listen ? dl::parse_listen_endpoint(canon) : dl::parse_dial_endpoint(canon);
  FUZZ_CHECK(again);
  FUZZ_CHECK(again->kind == ep->kind && again->host == ep->host && again->port == ep->port &&
             again->path == ep->path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check(text, false);
  check(text, true);
  dl::AllowList list;
  auto st = list.add(text);
  if (!st) FUZZ_CHECK(st.error().kind == dl::ErrorKind::usage);
  if (st) FUZZ_CHECK(!list.empty() && !list.to_string().empty());
  return 0;
}
