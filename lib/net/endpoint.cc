#include "lib/net/endpoint.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace dl {
namespace {

constexpr std::string_view kUnixPrefix = "unix:";

Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return make_error(ErrorKind::usage, std::string(whole),
                      "bad port '" + std::string(text) + "' (expected 0-65535)");
  }
  return static_cast<std::uint16_t>(value);
}

Result<Endpoint> parse_unix(std::string_view text) {
  Endpoint ep;
  ep.kind = Endpoint::Kind::unix_socket;
  ep.path = std::string(text.substr(kUnixPrefix.size()));
  if (ep.path.empty()) return make_error(ErrorKind::usage, std::string(text), "empty socket path");
  if (ep.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(ErrorKind::usage, std::string(text), "socket path too long");
  }
  return ep;
}

// Splits "host:port" / "[v6]:port"; `port_only_ok` accepts a bare port (listen forms).
Result<Endpoint> parse_tcp(std::string_view text, bool port_only_ok) {
  Endpoint ep;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return make_error(ErrorKind::usage, std::string(text), "missing ']' after IPv6 address");
    }
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (rest.size() < 2 || rest.front() != ':') {
      return make_error(ErrorKind::usage, std::string(text), "expected ':PORT' after ']'");
    }
    port = rest.substr(1);
    if (host.empty()) return make_error(ErrorKind::usage, std::string(text), "empty IPv6 address");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      if (!port_only_ok) {
        return make_error(ErrorKind::usage, std::string(text), "expected HOST:PORT");
      }
      port = text;
    } else {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (host.find(':') != std::string_view::npos) {
        return make_error(ErrorKind::usage, std::string(text),
                          "IPv6 addresses go in brackets: [ADDR]:PORT");
      }
      if (host.empty() && !port_only_ok) {
        return make_error(ErrorKind::usage, std::string(text), "empty host");
      }
    }
  }
  auto p = parse_port(port, text);
  if (!p) return p.error();
  ep.host = std::string(host);
  ep.port = *p;
  if (!port_only_ok && ep.port == 0) {
    return make_error(ErrorKind::usage, std::string(text), "cannot dial port 0");
  }
  return ep;
}

}  // namespace

std::string Endpoint::to_string() const {
  if (kind == Kind::unix_socket) return "unix:" + path;
  std::string h = host.empty() ? "*" : host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

Result<Endpoint> parse_dial_endpoint(std::string_view text) {
  if (text.starts_with(kUnixPrefix)) return parse_unix(text);
  return parse_tcp(text, false);
}

Result<Endpoint> parse_listen_endpoint(std::string_view text) {
  if (text.starts_with(kUnixPrefix)) return parse_unix(text);
  return parse_tcp(text, true);
}

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (family() == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (family() == AF_UNIX) {
    auto* a = reinterpret_cast<const sockaddr_un*>(&storage);
    return std::string("unix:") + a->sun_path;
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
  hints.ai_socktype = SOCK_STREAM;
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
