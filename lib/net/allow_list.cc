#include "lib/net/allow_list.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace dl {
namespace {

constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void mask(std::array<std::uint8_t, 16>& a, int prefix) {
  for (int i = 0; i < 16; ++i) {
    int keep = std::min(8, std::max(0, prefix - 8 * i));
    a[static_cast<std::size_t>(i)] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
}

}  // namespace

Status AllowList::add(std::string_view spec) {
  auto bad = [&](std::string why) {
    return make_error(ErrorKind::usage, "--allow '" + std::string(spec) + "'", std::move(why));
  };
  std::string_view addr = spec, len;
  if (auto slash = spec.find('/'); slash != std::string_view::npos) {
    addr = spec.substr(0, slash);
    len = spec.substr(slash + 1);
  }
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  Rule r;
  std::string a(addr);
  in_addr v4{};
  in6_addr v6{};
  int max_len = 0;
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) {
    std::memcpy(r.addr.data(), kMappedPrefix, 12);
    std::memcpy(r.addr.data() + 12, &v4, 4);
    r.v4 = true;
    max_len = 32;
  } else if (inet_pton(AF_INET6, a.c_str(), &v6) == 1) {
    std::memcpy(r.addr.data(), &v6, 16);
    max_len = 128;
  } else {
    return bad("expected an IPv4 or IPv6 address, optionally /LEN (host names are not taken)");
  }
  int prefix = max_len;
  if (spec.find('/') != std::string_view::npos) {
    auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
    if (len.empty() || ec != std::errc() || end != len.data() + len.size() || prefix < 0 || prefix > max_len) {
      return bad("bad prefix length '" + std::string(len) + "' (expected 0-" + std::to_string(max_len) + ")");
    }
  }
  r.prefix = r.v4 ? prefix + 96 : prefix;
  mask(r.addr, r.prefix);
  rules_.push_back(r);
  return ok_status();
}

Result<AllowList> AllowList::parse(const std::vector<std::string>& specs) {
  AllowList list;
  for (const auto& s : specs) {
    if (auto st = list.add(s); !st) return st.error();
  }
  return list;
}

bool AllowList::allows(const SocketAddress& peer) const {
  if (rules_.empty()) return true;
  std::array<std::uint8_t, 16> a{};
  if (peer.family() == AF_INET) {
    std::memcpy(a.data(), kMappedPrefix, 12);
    std::memcpy(a.data() + 12, &reinterpret_cast<const sockaddr_in*>(&peer.storage)->sin_addr, 4);
  } else if (peer.family() == AF_INET6) {
    std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6*>(&peer.storage)->sin6_addr, 16);
  } else {
    return peer.family() == AF_UNIX;
  }
  for (const Rule& r : rules_) {
    auto m = a;
    mask(m, r.prefix);
    if (m == r.addr) return true;
  }
  return false;
}

std::string AllowList::to_string() const {
  std::string out;
  for (const Rule& r : rules_) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (r.v4) {
      inet_ntop(AF_INET, r.addr.data() + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, r.addr.data(), buf, sizeof buf);
    }
    if (!out.empty()) out += ", ";
    out += std::string(buf) + "/" + std::to_string(r.v4 ? r.prefix - 96 : r.prefix);
  }
  return out;
}

}  // namespace dl
