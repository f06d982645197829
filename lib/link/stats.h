// LinkStats: what a link counts. Plain counters, owned by a link; tools read them to print progress and summaries.
#pragma once

#include <cstdint>
#include <string>

#include "lib/base/units.h"

namespace dl {

struct LinkStats {
  std::uint64_t bytes_sent = 0, messages_sent = 0;          // payload bytes committed by the app
  std::uint64_t bytes_acked = 0, messages_acked = 0;        // ... of which the peer acknowledged
                                                            // (classic: written to the socket)
  std::uint64_t bytes_received = 0, messages_received = 0;  // payload bytes delivered to the app
  std::uint64_t wire_bytes_out = 0, wire_bytes_in = 0;      // everything on the sockets
  std::uint64_t resent_bytes = 0;                           // replayed after reconnects
  std::uint64_t connections = 0, reconnects = 0;
  std::uint64_t keepalives_sent = 0, acks_sent = 0;
  std::uint64_t protocol_errors = 0, garbage_bytes = 0;
  std::uint64_t negative_ts = 0, negative_ts_dropped = 0;   // classic frames with ts < 0
};


}  // namespace dl
