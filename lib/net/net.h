// net: the few socket set-up calls the family needs, each returning a ready descriptor
// (in the style of OpenBSD nc). Every socket returned is non-blocking and close-on-exec.
// Nothing here moves payload bytes; links and pumps do that.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>

#include "lib/net/endpoint.h"
#include "lib/base/error.h"
#include "lib/base/fd.h"

namespace dl {

struct Listener {
  Fd fd;
  SocketAddress local;   // actual bound address (port filled in when 0 was asked)
  std::string unix_path; // removed again when the Listener is destroyed (if still ours)
  dev_t unix_dev = 0;    // identity of the socket file we made
  ino_t unix_ino = 0;
  ~Listener();
  Listener() = default;
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
};

// Resolves (blocking), binds and listens. IPv6 wildcards accept IPv4 too. At a unix path,
// only a stale socket (nobody accepts on it) is replaced; a regular file, directory, symlink
// or FIFO there is left alone and the listen fails. Errors: usage (a udp: endpoint), resolve,
// connect ("bind ...: Address already in use", "listen unix:/x: a regular file is in the
// way (only a stale socket is replaced)").
// The backlog is generous: a crowd of strangers (or a burst of reconnects) must not make the
// real peer's SYN wait for a retransmission while the acceptor catches up.
Result<Listener> listen_on(const Endpoint& endpoint, int backlog = 256);

// Starts a non-blocking connect. The descriptor becomes writable when the attempt ends;
// finish_connect() then tells how it ended. Errors: connect.
Result<Fd> start_connect(const SocketAddress& address);
Status finish_connect(int fd, const SocketAddress& address);

// Accepts one pending connection (non-blocking). Returns an invalid Fd when none is pending.
Result<Fd> accept_one(int listen_fd, SocketAddress* peer);

// The one place that sizes stream socket buffers (the sizes are stated in dl-endpoint(7)):
//  - TCP: TCP_NODELAY (frames are written whole, so Nagle only adds latency); SO_SNDBUF and
//    SO_RCVBUF are left to the kernel's autotuning (net.ipv4.tcp_wmem / tcp_rmem), because
//    setting either switches autotuning off for that socket and caps it at net.core.*mem_max,
//    which costs throughput on any path with a real bandwidth-delay product.
//  - Unix: SO_SNDBUF and SO_RCVBUF kUnixSocketBuffer (the kernel caps it at net.core.*mem_max),
//    five times the default, so a writer is woken per megabyte rather than per 200 KB.
// Called by start_connect() and accept_one(); best effort, never fails.
inline constexpr int kUnixSocketBuffer = 1 << 20;
void tune_stream_socket(int fd);

// True when the peer of connected stream socket `fd` runs on this host: a unix socket, a
// loopback address (127.0.0.0/8, ::1, also IPv4-mapped), or a peer address equal to our own
// end's (a connection to one of this host's own interface addresses). False when unsure
// (not a connected socket). No blocking, no errors.
bool peer_is_local(int fd);

// The port a listener or connected socket has locally (0 for unix sockets).
std::uint16_t port_of(const SocketAddress& address);

}  // namespace dl
