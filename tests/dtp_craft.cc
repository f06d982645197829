// dtp_craft: sends one hand-made DTP exchange to a dtpserve and prints what came back, for
// tests/test_dtp.py (checksums need the real codec, which Python's stdlib lacks).
//   dtp_craft HOST:PORT KIND [NAME [N]]
// KIND: bad-chunk | nul-name | version2 | unknown-type | stranger-request | beyond-end |
//       bad-cookie | good
// Prints one line: "META <size>", "ERROR <code>: <text>", "STOP <reason>", "DATA", "KEEPALIVE"
// or "none" (nothing within a second). Exit 0 unless the arguments are wrong.
// Floods, for the adversarial tests (a hostile peer that never takes part in a transfer):
//   open-flood NAME N      N OPENs with distinct session ids from one socket, never answered;
//                          prints "opened <sessions that got META or KEEPALIVE> busy <refusals>"
//   open-each NAME N       one OPEN each for NAME0 .. NAME<N-1>, never answered (a payload
//                          hash for each, if the server starts them); prints like open-flood
//   reflection NAME        OPENs a forged source could send (padded for NAME and for a long
//                          unknown name, unpadded, another version, a bad chunk), each with its
//                          own session id; prints "sent <bytes> reply <TYPE> <bytes>" per answer
//   request-flood NAME S   one real session (META, cookie), then for S seconds REQUESTs packed
//                          with 1-byte ranges, every part of pass after pass, never reading;
//                          prints "requests <count>"
// A hostile server, for dtpget (HOST:PORT is where it listens; port 0: any):
//   fragment-server SIZE S CHUNK  prints "port <n>", answers the first OPEN with META for a
//                          SIZE-byte payload (chunk: CHUNK, or what was asked), then for S
//                          seconds (or until the client is gone) sends 1-byte DATA at scattered
//                          even offsets, never two alike, in the client's latest pass; answers
//                          nothing else; prints "sent <datagrams>"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <string>
#include <vector>

#include "lib/base/byte_order.h"
#include "lib/codec/dtp_packet.h"
#include "lib/net/datagram.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

using namespace dl;
using namespace dl::dtp;

namespace {
std::vector<std::uint8_t> buf(kMaxDatagram);
std::vector<std::uint8_t> in(kMaxDatagram);
int fd = -1;

void reseal(std::size_t n) {
  put_u32(buf.data() + 4, 0);
  put_u32(buf.data() + 4, static_cast<std::uint32_t>(XXH3_64bits_withSeed(buf.data() + 8, n - 8, get_u32(buf.data()))));
}
void send_n(std::size_t n) { (void)::send(fd, buf.data(), n, 0); }

// Waits for the next datagram that is not DATA (unless `data_ok`); fills p, returns false on silence.
bool next_reply(Packet& p, bool data_ok) {
  for (;;) {
    pollfd q{fd, POLLIN, 0};
    if (::poll(&q, 1, 1000) <= 0) return false;
    ssize_t n = ::recv(fd, in.data(), in.size(), 0);
    if (n <= 0) return false;
    if (*decode({in.data(), static_cast<std::size_t>(n)}, p)) continue;
    if (p.type == Type::data && !data_ok) continue;
    return true;
  }
}

void print(const Packet& p) {
  switch (p.type) {
    case Type::meta: std::printf("META %llu\n", static_cast<unsigned long long>(p.meta.size)); break;
    case Type::error:
      std::printf("ERROR %u: %.*s\n", static_cast<unsigned>(p.error.code), static_cast<int>(p.error.text.size()), p.error.text.data());
      break;
    case Type::stop: std::printf("STOP %u\n", static_cast<unsigned>(p.stop.reason)); break;
    case Type::data: std::printf("DATA\n"); break;
    case Type::keepalive: std::printf("KEEPALIVE\n"); break;
    default: std::printf("%s\n", std::string(type_name(p.type)).c_str()); break;
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dtp_craft HOST:PORT KIND [NAME [N]]\n");
    return 2;
  }
  std::string kind = argv[2], name = argc > 3 ? argv[3] : "x.bin";
  if (kind == "fragment-server") {
    std::string at = argv[1];
    std::uint64_t size = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1ull << 30;
    double secs = argc > 4 ? std::atof(argv[4]) : 20;
    long grant = argc > 5 ? std::atol(argv[5]) : 0;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(at.substr(at.rfind(':') + 1).c_str())));
    if (size < 4 || ::inet_pton(AF_INET, at.substr(0, at.rfind(':')).c_str(), &sa.sin_addr) != 1) return 2;
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof sa;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      return 2;
    }
    std::printf("port %u\n", static_cast<unsigned>(ntohs(sa.sin_port)));
    std::fflush(stdout);
    Packet p;
    sockaddr_in peer{};
    for (;;) {  // the first OPEN, from whoever sends it
      pollfd q{fd, POLLIN, 0};
      if (::poll(&q, 1, 30000) <= 0) return 1;
      len = sizeof peer;
      ssize_t n = ::recvfrom(fd, in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&peer), &len);
      if (n > 0 && !*decode({in.data(), static_cast<std::size_t>(n)}, p) && p.type == Type::open) break;
    }
    // Connected: the client's port closing shows as ECONNREFUSED.
    if (::connect(fd, reinterpret_cast<sockaddr*>(&peer), len) != 0) return 1;
    const std::uint64_t sid = p.session;
    const std::uint16_t chunk = grant > 0 ? static_cast<std::uint16_t>(grant) : p.open.chunk;
    const std::array<std::uint8_t, 32> sha{};
    auto meta = [&] { send_n(encode_meta(buf.data(), sid, size, sha, chunk, 0, 0xc00c1e)); };
    meta();
    // Offsets 2*(k*P mod size/2): even, so never adjacent, and all distinct while k < size/2
    // (P is prime: unless size/2 is a multiple of it).
    const std::uint64_t half = size / 2, P = 1000003;
    constexpr unsigned kBatch = 64;
    static std::uint8_t dg[kBatch][kDataHeaderSize + 1];
    iovec iov[kBatch];
    mmsghdr mm[kBatch];
    std::uint32_t pass = 1, seq = 0;
    std::uint64_t sent = 0, k = 0;
    timespec t0, t;
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    for (bool gone = false; !gone;) {
      for (unsigned i = 0; i < kBatch; ++i, ++k) {
        dg[i][kDataHeaderSize] = static_cast<std::uint8_t>(k);
        encode_data_header(dg[i], sid, 2 * ((k * P) % half), seq++, pass, 1);
        iov[i] = {dg[i], sizeof dg[i]};
        mm[i] = {};
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
      }
      int m = ::sendmmsg(fd, mm, kBatch, 0);
      if (m < 0 && errno == ECONNREFUSED) break;
      if (m > 0) sent += static_cast<std::uint64_t>(m);
      // Follow the client's passes (so its repairs run), answer a repeated OPEN, stop at STOP.
      for (ssize_t n; (n = ::recv(fd, in.data(), in.size(), MSG_DONTWAIT)) != 0;) {
        if (n < 0) {
          gone = gone || errno == ECONNREFUSED;
          break;
        }
        if (*decode({in.data(), static_cast<std::size_t>(n)}, p) || p.session != sid) continue;
        if (p.type == Type::request && p.request.pass > pass) pass = p.request.pass;
        if (p.type == Type::open) meta();
        if (p.type == Type::stop) gone = true;
      }
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      if (static_cast<double>(t.tv_sec - t0.tv_sec) + static_cast<double>(t.tv_nsec - t0.tv_nsec) * 1e-9 > secs) break;
    }
    std::printf("sent %llu\n", static_cast<unsigned long long>(sent));
    return 0;
  }
  auto ep = parse_dial_endpoint(argv[1]);
  if (!ep) return 2;
  auto addrs = resolve(*ep, false);
  if (!addrs) return 2;
  auto sock = dial_datagram(addrs->front(), 1 << 20);
  if (!sock) return 2;
  fd = sock->fd.get();
  const std::uint64_t sid = 0x5eed0000 + static_cast<std::uint64_t>(::getpid());
  std::vector<ByteRange> one = {{0, 1000}};
  std::size_t next = 0;
  Packet p;
  if (kind == "bad-chunk") {
    std::size_t n = encode_open(buf.data(), sid, 1400, name);
    put_u16(buf.data() + 16, 10);
    reseal(n);
    send_n(n);
  } else if (kind == "nul-name") {
    std::size_t n = encode_open(buf.data(), sid, 1400, name);
    buf[20] = 0;
    reseal(n);
    send_n(n);
  } else if (kind == "version2") {
    std::size_t n = encode_open(buf.data(), sid, 1400, name);
    buf[2] = 2;
    reseal(n);
    send_n(n);
  } else if (kind == "unknown-type") {
    std::size_t n = encode_keepalive(buf.data(), sid, 0);
    buf[3] = 42;
    n = 64;  // room for the ERROR's text: no answer is larger than what it answers
    std::memset(buf.data() + kHeaderSize, 0, n - kHeaderSize);
    reseal(n);
    send_n(n);
  } else if (kind == "stranger-request") {
    send_n(encode_request(buf.data(), kMaxDatagram, sid, 1, 0, 0, 1, one, 0, next));
  } else if (kind == "open-flood" || kind == "open-each") {
    long n = argc > 4 ? std::atol(argv[4]) : 100;
    for (long i = 1; i <= n; ++i) {
      std::string nm = kind == "open-each" ? name + std::to_string(i - 1) : name;
      send_n(encode_open(buf.data(), sid + static_cast<std::uint64_t>(i) * 0x100000000ull, 1400, nm));
    }
    long opened = 0, busy = 0;
    std::vector<std::uint64_t> seen;
    while (next_reply(p, false)) {
      if (p.type == Type::error && p.error.code == ErrorCode::busy) ++busy;
      if ((p.type == Type::meta || p.type == Type::keepalive) &&
          std::find(seen.begin(), seen.end(), p.session) == seen.end()) {
        seen.push_back(p.session);
        ++opened;
      }
    }
    std::printf("opened %ld busy %ld\n", opened, busy);
    return 0;
  } else if (kind == "reflection") {
    std::vector<std::size_t> sent;  // by variant; session id = sid + variant
    auto open_variant = [&](std::string_view nm) { return encode_open(buf.data(), sid + sent.size(), 1400, nm); };
    auto go = [&](std::size_t n) {
      send_n(n);
      sent.push_back(n);
    };
    go(open_variant(name));
    go(open_variant(std::string(1000, 'x')));     // unknown: the longest error text we could say
    std::size_t n = open_variant(name);
    n = kHeaderSize + 4 + name.size();            // as an unpadded (older) client would send it
    reseal(n);
    go(n);
    n = open_variant(name);
    buf[2] = 2;                                   // another version
    reseal(n);
    go(n);
    n = open_variant(name);
    put_u16(buf.data() + 16, 10);                 // bad chunk
    reseal(n);
    go(n);
    for (;;) {
      pollfd q{fd, POLLIN, 0};
      if (::poll(&q, 1, 1000) <= 0) break;
      ssize_t got = ::recv(fd, in.data(), in.size(), 0);
      if (got < static_cast<ssize_t>(kHeaderSize)) continue;
      std::size_t v = static_cast<std::size_t>(get_u64(in.data() + 8) - sid);
      Packet r;
      const char* bad = decode({in.data(), static_cast<std::size_t>(got)}, r);
      std::printf("sent %zu reply %s %zd\n", v < sent.size() ? sent[v] : 0, *bad ? bad : std::string(type_name(r.type)).c_str(), got);
    }
    return 0;
  } else if (kind == "request-flood") {
    double secs = argc > 4 ? std::atof(argv[4]) : 2;
    send_n(encode_open(buf.data(), sid, 1400, name));
    Packet m;
    while (next_reply(m, false) && m.type == Type::keepalive) send_n(encode_open(buf.data(), sid, 1400, name));
    if (m.type != Type::meta || m.meta.size < 4) {
      print(m);
      return 0;
    }
    // As many 1-byte ranges as one datagram holds: the most work and plan entries per byte.
    std::vector<ByteRange> tiny;
    for (std::uint64_t a = 0; a + 1 < m.meta.size && tiny.size() < 40000; a += 2) tiny.push_back({a, a + 1});
    std::uint64_t requests = 0;
    timespec t0, t;
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    for (std::uint32_t pass = 1;; ++pass) {
      for (std::uint16_t part = 0; part < kMaxParts; ++part) {
        std::size_t from = (static_cast<std::size_t>(part) * 997) % tiny.size();
        send_n(encode_request(buf.data(), kMaxDatagram, sid, pass, part, 0, m.meta.cookie, tiny, from, next));
        ++requests;
      }
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      if (static_cast<double>(t.tv_sec - t0.tv_sec) + static_cast<double>(t.tv_nsec - t0.tv_nsec) * 1e-9 > secs) break;
    }
    send_n(encode_stop(buf.data(), sid, StopReason::cancelled));
    std::printf("requests %llu\n", static_cast<unsigned long long>(requests));
    return 0;
  } else if (kind == "beyond-end" || kind == "bad-cookie" || kind == "good") {
    send_n(encode_open(buf.data(), sid, 1400, name));
    Packet m;
    while (next_reply(m, false) && m.type == Type::keepalive) send_n(encode_open(buf.data(), sid, 1400, name));
    if (m.type != Type::meta) {
      print(m);
      return 0;
    }
    std::uint64_t cookie = m.meta.cookie;
    std::vector<ByteRange> r = {{0, m.meta.size < 1000 ? m.meta.size : 1000}};
    if (kind == "beyond-end") r = {{0, m.meta.size + 1}};
    if (kind == "bad-cookie") cookie ^= 1;
    send_n(encode_request(buf.data(), kMaxDatagram, sid, 1, 0, 0, cookie, r, 0, next));
    bool got = false;
    while ((got = next_reply(p, true)) && (p.type == Type::meta || p.type == Type::keepalive)) {
    }  // late answers to the OPENs above
    if (!got) {
      std::printf("none\n");
    } else {
      print(p);
    }
    send_n(encode_stop(buf.data(), sid, StopReason::done));
    return 0;
  } else {
    std::fprintf(stderr, "dtp_craft: unknown kind %s\n", kind.c_str());
    return 2;
  }
  if (!next_reply(p, true)) {
    std::printf("none\n");
    return 0;
  }
  print(p);
  return 0;
}
