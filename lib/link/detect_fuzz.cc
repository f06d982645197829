// Fuzz target for a listener's door: detect_newcomer() on arbitrary first bytes, and, when they
// decode as a HELLO, Session::admit() of it by a fresh listener and by one with a live session.
// Neither may crash, and a stranger's bytes must never resume a session it does not hold.
// fuzz-sources: lib/link/detect.cc lib/link/session.cc lib/codec/frame.cc lib/codec/classic_codec.cc lib/codec/checksum.cc lib/codec/checksum_avx2.cc lib/base/error.cc lib/base/random.cc lib/base/clock.cc
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lib/link/detect.h"
#include "lib/link/session.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> buf(data, size);
  for (auto proto : {dl::Proto::automatic, dl::Proto::native, dl::Proto::classic}) {
    std::size_t limit = dl::newcomer_read_limit(buf);
    if (limit == 0) __builtin_trap();
    auto d = dl::detect_newcomer(buf, proto, 1 << 16, "from fuzz");
    if (d.kind == dl::Detection::refuse && d.why.message().empty()) __builtin_trap();
    if (d.kind != dl::Detection::native) continue;
    dl::Session fresh(dl::SessionConfig{true, 1 << 16, 1000, 1 << 20});
    (void)fresh.admit(d.hello, true);
    // A listener with a live session of its own: the stranger cannot know its token.
    dl::Session live(dl::SessionConfig{true, 1 << 16, 1000, 1 << 20});
    dl::Session dialer(dl::SessionConfig{false, 1 << 16, 1000, 1 << 20});
    auto first = dialer.hello();
    if (live.admit(first, true).action != dl::Session::Admit::adopt) __builtin_trap();
    live.establish(first);
    live.confirm();
    auto v = live.admit(d.hello, false);
    if (v.action == dl::Session::Admit::resume) __builtin_trap();
  }
  return 0;
}
