#include "lib/net/endpoint.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace dl {
namespace {

constexpr std::string_view kUnixPrefix = "unix:";
constexpr std::string_view kUdpPrefix = "udp:";
constexpr std::string_view kTcpPrefix = "tcp:";

// Every parse error names the text as the user wrote it, quoted, so that an empty or odd
// argument still reads well: "endpoint ':': empty host and port".
Error bad(bool listen, std::string_view whole, std::string detail) {
  return make_error(ErrorKind::usage,
                    std::string(listen ? "listen endpoint '" : "endpoint '") + std::string(whole) + "'",
                    std::move(detail));
}

// The hint lists the stream forms, or the datagram forms once the text says udp:.
std::string expected(bool listen, std::string_view whole) {
  if (whole.starts_with("udp:")) return listen ? "expected udp:[HOST:]PORT" : "expected udp:HOST:PORT";
  return listen ? "expected PORT, HOST:PORT, [IPV6]:PORT or unix:PATH"
                : "expected HOST:PORT, [IPV6]:PORT or unix:PATH";
}

Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole, bool listen) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty()) return bad(listen, whole, "missing port (" + expected(listen, whole) + ")");
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return bad(listen, whole, "bad port '" + std::string(text) + "' (expected 0-65535)");
  }
  return static_cast<std::uint16_t>(value);
}

bool is_ipv6_literal(std::string_view host) {
  auto pct = host.find('%');
  if (pct != std::string_view::npos && pct + 1 == host.size()) return false;  // "%" and no scope
  std::string addr(host.substr(0, pct));
  in6_addr a{};
  return inet_pton(AF_INET6, addr.c_str(), &a) == 1;
}

Result<Endpoint> parse_unix(std::string_view text, std::string_view whole, bool listen) {
  Endpoint ep;
  ep.kind = Endpoint::Kind::unix_socket;
  ep.path = std::string(text.substr(kUnixPrefix.size()));
  if (ep.path.empty()) return bad(listen, whole, "empty socket path after 'unix:'");
  if (ep.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return bad(listen, whole, "socket path too long (at most 107 bytes)");
  }
  if (ep.path.find('\0') != std::string::npos) return bad(listen, whole, "NUL byte in socket path");
  return ep;
}

// Splits "host:port" / "[v6]:port"; a listener may give a bare port.
Result<Endpoint> parse_ip(std::string_view text, std::string_view whole, bool listen) {
  Endpoint ep;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad(listen, whole, "missing ']' after IPv6 address");
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad(listen, whole, "expected ':PORT' after ']'");
    port = rest.substr(1);
    if (host.empty()) return bad(listen, whole, "empty IPv6 address in brackets");
    if (!is_ipv6_literal(host)) {
      in_addr v4{};
      std::string h(host);
      if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
        return bad(listen, whole, "brackets are for IPv6 addresses only; write " + h + ":PORT");
      }
      return bad(listen, whole, "'" + h + "' is not an IPv6 address");
    }
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      if (!listen) {
        if (text.empty()) return bad(listen, whole, "empty (" + expected(listen, whole) + ")");
        return bad(listen, whole, "missing ':PORT' (" + expected(listen, whole) + ")");
      }
      if (text.empty()) return bad(listen, whole, "empty (" + expected(listen, whole) + ")");
      port = text;
    } else {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (host.find(':') != std::string_view::npos) {
        return bad(listen, whole, "IPv6 addresses go in brackets: [ADDR]:PORT");
      }
      if (host.empty() && port.empty()) return bad(listen, whole, "empty host and port (" + expected(listen, whole) + ")");
      if (host.empty() && !listen) return bad(listen, whole, "empty host (" + expected(listen, whole) + ")");
    }
    for (char c : host) {
      if (static_cast<unsigned char>(c) <= ' ' || c == '[' || c == ']' || c == '/') {
        return bad(listen, whole, "'" + std::string(host) + "' is not a host name or address");
      }
    }
  }
  auto p = parse_port(port, whole, listen);
  if (!p) return p.error();
  ep.host = std::string(host);
  ep.port = *p;
  if (!listen && ep.port == 0) return bad(listen, whole, "cannot dial port 0");
  return ep;
}

Result<Endpoint> parse(std::string_view text, bool listen) {
  if (auto scheme = text.find("://"); scheme != std::string_view::npos) {
    return bad(listen, text,
               "URL scheme '" + std::string(text.substr(0, scheme)) + "://' is not supported (" +
                   expected(listen, text) + ")");
  }
  if (text.starts_with(kUnixPrefix)) return parse_unix(text, text, listen);
  Endpoint::Kind kind = Endpoint::Kind::tcp;
  std::string_view rest = text;
  if (text.starts_with(kUdpPrefix)) {
    kind = Endpoint::Kind::udp;
    rest = text.substr(kUdpPrefix.size());
  } else if (text.starts_with(kTcpPrefix)) {
    rest = text.substr(kTcpPrefix.size());
  }
  auto ep = parse_ip(rest, text, listen);
  if (!ep) return ep;
  ep->kind = kind;
  return ep;
}

}  // namespace

std::string Endpoint::to_string() const {
  if (kind == Kind::unix_socket) return "unix:" + path;
  std::string h = host.empty() ? "*" : host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  // A host literally named like a prefix needs the tcp: prefix to read back the same.
  bool ambiguous = host == "tcp" || host == "udp" || host == "unix";
  return (kind == Kind::udp ? "udp:" : ambiguous ? "tcp:" : "") + h + ":" + std::to_string(port);
}

Result<Endpoint> parse_dial_endpoint(std::string_view text) { return parse(text, false); }

Result<Endpoint> parse_listen_endpoint(std::string_view text) { return parse(text, true); }

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (family() == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&storage);
    std::string port = std::to_string(ntohs(a->sin6_port));
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; users know them as a.b.c.d.
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof buf);
      return std::string(buf) + ":" + port;
    }
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    std::string host(buf);
    if (a->sin6_scope_id != 0) {
      char name[IF_NAMESIZE] = {};
      host += "%";
      host += if_indextoname(a->sin6_scope_id, name) ? std::string(name) : std::to_string(a->sin6_scope_id);
    }
    return "[" + host + "]:" + port;
  }
  if (family() == AF_UNIX) {
    auto* a = reinterpret_cast<const sockaddr_un*>(&storage);
    std::size_t off = offsetof(sockaddr_un, sun_path);
    std::string name;
    if (length > off) {
      std::size_t n = std::min<std::size_t>(length - off, sizeof a->sun_path);
      if (a->sun_path[0] == '\0' && n > 1) {
        name = "@" + std::string(a->sun_path + 1, n - 1);  // abstract namespace
      } else {
        name = std::string(a->sun_path, strnlen(a->sun_path, n));
      }
    }
    std::string out = "unix:" + (name.empty() ? std::string("(unnamed)") : name);
    if (unix_peer_pid > 0) out += " (pid " + std::to_string(unix_peer_pid) + ")";
    return out;
  }
  return "?";
}

Result<std::vector<SocketAddress>> resolve(const Endpoint& endpoint, bool passive) {
  std::vector<SocketAddress> out;
  if (endpoint.kind == Endpoint::Kind::unix_socket) {
    SocketAddress a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, endpoint.path.data(), endpoint.path.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + endpoint.path.size() + 1);
    out.push_back(a);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = endpoint.kind == Endpoint::Kind::udp ? SOCK_DGRAM : SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
  addrinfo* list = nullptr;
  std::string port = std::to_string(endpoint.port);
  const char* host = endpoint.host.empty() ? nullptr : endpoint.host.c_str();
  int rc = getaddrinfo(host, port.c_str(), &hints, &list);
  if (rc == EAI_ADDRFAMILY || (rc == EAI_NONAME && host && !passive)) {
    hints.ai_flags &= ~AI_ADDRCONFIG;  // loopback-only hosts have no "configured" address
    rc = getaddrinfo(host, port.c_str(), &hints, &list);
  }
  if (rc != 0) {
    return make_error(ErrorKind::resolve, "resolve " + endpoint.host,
                      rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc));
  }
  for (addrinfo* ai = list; ai; ai = ai->ai_next) {
    SocketAddress a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    out.push_back(a);
  }
  freeaddrinfo(list);
  if (passive && !host) {
    // Prefer one dual-stack IPv6 wildcard socket; IPv4 stays as fallback for v6-less hosts.
    std::stable_partition(out.begin(), out.end(),
                          [](const SocketAddress& a) { return a.family() == AF_INET6; });
  }
  if (out.empty()) return make_error(ErrorKind::resolve, "resolve " + endpoint.host, "no addresses");
  return out;
}

}  // namespace dl
