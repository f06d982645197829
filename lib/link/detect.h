// detect: what a listener makes of a newcomer's first bytes, decided by the bytes alone (pure:
// no sockets, no clock). The first byte decides the protocol (0xD7 native, 0x20 classic);
// a classic newcomer counts once a whole valid frame header has arrived, a native one once its
// HELLO decodes. Silence decides nothing: the caller drops a newcomer that stays undecided past
// its handshake deadline. Whether a decided newcomer may join (admission) is Session's call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lib/base/error.h"
#include "lib/codec/frame.h"

namespace dl {

enum class Proto { native, classic, automatic };

struct Detection {
  enum Kind { need_more, classic, native, refuse };
  Kind kind = need_more;
  frame::Hello hello;  // native: the newcomer's decoded HELLO
  Error why;           // refuse: the reason, in the context given
  bool tell = false;   // refuse: the newcomer speaks native, so answer with an ERROR frame
};

// How many more bytes to read from a newcomer that sent `early` so far: never beyond one
// HELLO (a native dialer waits for ours) or one classic header.
std::size_t newcomer_read_limit(std::span<const std::uint8_t> early);

// Judges `early` for a listener speaking `proto` (automatic: either) with `max_message`.
// `context` names the newcomer in errors ("from 10.0.0.1:4242").
Detection detect_newcomer(std::span<const std::uint8_t> early, Proto proto, std::uint32_t max_message,
                          const std::string& context);

}  // namespace dl
