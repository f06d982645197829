// Endpoint: where a tool dials or listens, parsed in one place for the whole family.
//
// Grammar (documented for users in man/dl-endpoint.7):
//   dial:    HOST:PORT | [IPV6]:PORT | unix:PATH
//   listen:  PORT | HOST:PORT | [IPV6]:PORT | unix:PATH     (PORT 0: the system picks one)
// HOST is an IPv4 literal, an IPv6 literal in brackets, or a name resolved with getaddrinfo.
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
  enum class Kind { tcp, unix_socket };
  Kind kind = Kind::tcp;
  std::string host;   // empty when listening on every address
  std::uint16_t port = 0;
  std::string path;   // unix sockets only

  // Canonical text: "127.0.0.1:9000", "[::1]:9000", "*:9000", "unix:/tmp/s".
  std::string to_string() const;
};

// Pure parsers. Errors are ErrorKind::usage with a detail naming what is wrong.
Result<Endpoint> parse_dial_endpoint(std::string_view text);
Result<Endpoint> parse_listen_endpoint(std::string_view text);

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  std::string to_string() const;  // "127.0.0.1:9000", "[::1]:9000", "unix:/path"
};

// Resolves to candidate addresses in the resolver's preferred order. Blocks (getaddrinfo).
// `passive` asks for addresses to bind; an empty host then gives the IPv6 and IPv4 wildcards.
// Errors: ErrorKind::resolve with the resolver's message.
Result<std::vector<SocketAddress>> resolve(const Endpoint& endpoint, bool passive);

}  // namespace dl
