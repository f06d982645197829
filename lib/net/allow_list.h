// AllowList: which peer addresses a listener lets in, from repeatable `--allow ADDR[/LEN]`
// flags (IPv4 or IPv6, v4-mapped included). Pure: parsing and matching, no sockets.
//
// Not authentication: it trusts the source address, which anyone on the path can forge for
// a SYN but not for a whole TCP conversation off-path. Without keys it is the only admission
// control a listener has (see dl-endpoint(7)).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"
#include "lib/net/endpoint.h"

namespace dl {

class AllowList {
 public:
  // Adds one rule: "10.0.0.7", "10.0.0.0/8", "::1", "2001:db8::/32", "::ffff:10.0.0.0/104".
  // Host bits past LEN are ignored. Errors: ErrorKind::usage naming the spec ("--allow 'x'").
  Status add(std::string_view spec);
  // All specs, or the first error.
  static Result<AllowList> parse(const std::vector<std::string>& specs);

  // An empty list lets everybody in (no --allow given).
  bool empty() const { return rules_.empty(); }
  // IPv4 peers match IPv4 rules whether they arrive as 10.0.0.7 or ::ffff:10.0.0.7. Unix
  // peers always pass: the socket file's permissions decide who may connect.
  bool allows(const SocketAddress& peer) const;
  // "10.0.0.0/8, ::1/128" (for --verbose and messages).
  std::string to_string() const;

 private:
  struct Rule {
    std::array<std::uint8_t, 16> addr{};  // IPv4 stored v4-mapped
    int prefix = 128;                      // in IPv6 bits (IPv4 /8 is 104)
    bool v4 = false;                       // written as IPv4 (for to_string)
  };
  std::vector<Rule> rules_;
};

}  // namespace dl
