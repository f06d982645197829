#include "lib/net/evict.h"

#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace dl {
namespace {

std::array<std::uint8_t, 9> source_of(const SocketAddress& a) {
  std::array<std::uint8_t, 9> k{};  // the address bytes, then which kind they are
  if (a.family() == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(a.get());
    std::memcpy(k.data(), &in->sin_addr, 4);
    k[8] = 4;
  } else if (a.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.get());
    const std::uint8_t* b = in6->sin6_addr.s6_addr;
    bool v4 = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
    std::memcpy(k.data(), v4 ? b + 12 : b, v4 ? 4 : 8);
    k[8] = v4 ? 4 : 6;
  }
  return k;
}

}  // namespace

std::size_t evictee(std::span<const SocketAddress> peers) {
  // Sources sorted, then each run counted.
  std::vector<std::pair<std::array<std::uint8_t, 9>, std::size_t>> by_source;
  by_source.reserve(peers.size());
  for (std::size_t i = 0; i < peers.size(); ++i) by_source.emplace_back(source_of(peers[i]), i);
  std::sort(by_source.begin(), by_source.end());
  std::size_t victim = 0, most = 0;
  for (std::size_t run = 0; run < by_source.size();) {
    std::size_t end = run;
    while (end < by_source.size() && by_source[end].first == by_source[run].first) ++end;
    if (end - run > most) {
      most = end - run;
      victim = by_source[run].second;  // the smallest index of the run: its oldest
    }
    run = end;
  }
  return victim;
}

}  // namespace dl
