// raw: dlbridge --raw, a plain byte relay for protocols that are not ours. For each client
// accepted on a listening side it opens one connection to the other side (or pairs it with a
// client of the other side when both listen) and pumps bytes both ways, passing each
// half-close on, until both directions are closed. With no faults the bytes move by splice(2)
// (net/pump.h); with --fault they go through a delay line and a token bucket in user space, and
// cuts reset both connections of a pair.
//
// With --fanout the listening side keeps several clients on ONE connection to the other side:
// what comes from the other side is copied to every client (the slowest one sets the pace), and
// what a client sends goes to the other side in whole chunks, never interleaved mid-chunk.
//
// Not a message relay: no reconnection (a broken relayed connection closes its partner), no
// buffering beyond a bounded buffer per direction.
#pragma once

#include "lib/app/context.h"
#include "lib/bridge/bridge.h"

namespace dl::bridge {

// Blocks until the relay ends: with a dialing side on both ends, after that one pair closes
// (0, or 4 when a side cannot be reached); with a listening side, on a signal (130).
int run_raw_bridge(const DlbridgeOptions& options, ToolContext& ctx);

}  // namespace dl::bridge
