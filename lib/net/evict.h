// evict: which of a full list of newcomers (connections still in a handshake) makes room for one
// more. The oldest connection of the source that holds the most, a source being an IPv4
// address, an IPv6 /64 (what one host usually holds) or all unix peers together: a stranger
// flooding from one address evicts its own connections, not a real dialer's slow handshake
// (64 strangers in a row from one address would otherwise push out everybody).
//
// Used by TlsGate for TLS handshakes and by the message link's listener for protocol
// handshakes. Pure: no sockets, no clock.
#pragma once

#include <cstddef>
#include <span>

#include "lib/net/endpoint.h"

namespace dl {

// `peers`: the newcomers' addresses, oldest first. The index of the one to drop (0 for an
// empty list). Sorts a copy: a list is short (64), and under a flood this runs once per newcomer.
std::size_t evictee(std::span<const SocketAddress> peers);

}  // namespace dl
