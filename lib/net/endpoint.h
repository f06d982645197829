// Endpoint: where a tool dials or listens, parsed in one place for the whole family.
//
// Grammar (documented for users in man/dl-endpoint.7):
//   dial:    [tcp:]HOST:PORT | [tcp:][IPV6]:PORT | udp:HOST:PORT | udp:[IPV6]:PORT | unix:PATH
//   listen:  [tcp:|udp:][HOST:]PORT | [tcp:|udp:][IPV6]:PORT | unix:PATH   (PORT 0: any free port)
// HOST is an IPv4 literal, an IPv6 literal in brackets (with an optional %SCOPE), or a name
// resolved with getaddrinfo. Brackets hold IPv6 literals only. URLs (tcp://...) are refused.
// An Endpoint is only a parsed description; resolving it to socket addresses is separate
// (and blocks), and opening sockets lives in net.h.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"

namespace dl {

struct Endpoint {
  enum class Kind { tcp, unix_socket, udp };
  Kind kind = Kind::tcp;
  std::string host;   // empty when listening on every address
  std::uint16_t port = 0;
  std::string path;   // unix sockets only

  // Canonical text: "127.0.0.1:9000", "[::1]:9000", "*:9000", "unix:/tmp/s", "udp:[::1]:53".
  std::string to_string() const;
  bool is_stream() const { return kind != Kind::udp; }
};

// Pure parsers. Errors are ErrorKind::usage with a detail naming what is wrong.
Result<Endpoint> parse_dial_endpoint(std::string_view text);
Result<Endpoint> parse_listen_endpoint(std::string_view text);

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  // Unix peers are usually unnamed; an acceptor fills in the listening path and the peer's
  // process id (SO_PEERCRED) so that messages can say who it was. 0: unknown.
  int unix_peer_pid = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // "127.0.0.1:9000" (also for IPv4-mapped IPv6), "[::1]:9000", "[fe80::1%eth0]:9000",
  // "unix:/path", "unix:/path (pid 42)", "unix:@abstract", "unix:(unnamed)".
  std::string to_string() const;
};

// Resolves to candidate addresses in the resolver's preferred order. Blocks (getaddrinfo).
// `passive` asks for addresses to bind; an empty host then gives the IPv6 and IPv4 wildcards.
// Stream and datagram endpoints resolve alike (the kind picks SOCK_STREAM or SOCK_DGRAM).
// Errors: ErrorKind::resolve with the resolver's message.
Result<std::vector<SocketAddress>> resolve(const Endpoint& endpoint, bool passive);

}  // namespace dl
