// bridge: dlbridge as a library function. Joins two endpoints that cannot reach each other and
// forwards in both directions, each side dialing or listening on its own and reconnecting on
// its own.
//
// Message mode (default): each side is a Link (native or classic). A message taken from one side
// is released there (acknowledged upstream) only once the other side has settled it: a native
// peer acknowledged it as delivered, or a classic socket took it whole. Messages that arrive
// while the other side is down stay in the upstream link's buffers, so the bridge holds a
// bounded amount and stops reading a side when it is full (backpressure), never drops. With
// native links on both sides a sender's exit 0 therefore means the final receiver has the data.
//
// Message fanout (--fanout): side a is a multi-session SessionListener, one Link per native
// client session; what b sends goes to every client attached, and is released upstream once
// some client settled it and every client that got it settled it or left (the slowest sets the
// pace; what nobody settled waits for the next client); what any client sends goes to b. Rules
// in dlbridge(1), Fanout.
//
// Raw mode (--raw): plain TCP byte forwarding for protocols that are not ours, one upstream
// connection per accepted client, half-close passed through.
//
// What it is not: a router (two sides; a fanout side is many clients seen as one), or a store
// on disk (a killed bridge loses what it held; the native peers then report the lost session
// instead of going on silently).
#pragma once

#include <array>
#include <string>

#include "lib/app/context.h"
#include "lib/bridge/faults.h"
#include "lib/link/link.h"

namespace dl::bridge {

struct Side {
  LinkOptions link;        // endpoint, listen or dial, proto, timeouts for this side
  std::string port_file;   // listening side: write the bound port here
};

// How --raw moves bytes. splice(2) keeps payload out of user space, which is what a relay
// between hosts wants; but when both peers run on this host their own copies are the cost
// that matters, and a plain copy through a buffer keeps the bytes they touch in cache (the
// sender's pages are not held for the receiver to read cold): faster and cheaper overall.
enum class SpliceMode { automatic, on, off };  // automatic: splice unless both peers are local

struct DlbridgeOptions {
  std::array<Side, 2> side;   // "a" and "b"
  bool raw = false;
  bool fanout = false;          // side a keeps several clients (each its own session or connection)
  SpliceMode splice = SpliceMode::automatic;  // raw mode without faults
  FaultPlan faults;
  double stats_interval_s = 0;  // 0: no periodic counters
  Verbosity verbosity;
};

// Blocks until the bridge ends: both sessions completed (message mode, unless a listening side
// keeps open), a side gave up (its error's exit code), or a signal (130). Prints through ctx.
int run_dlbridge(const DlbridgeOptions& options, ToolContext& ctx);

}  // namespace dl::bridge
