// tls_bench: what keys add to a reconnect on loopback: TCP connect, the TLS 1.3 handshake (full,
// or resumed from the ticket of the previous connection) and one round trip of 104 bytes each
// way (the size of a native HELLO frame), dialer and listener stepped in one thread. Prints the
// median and the 90th percentile of N connections per setup. For scripts/bench; not a test.
//   tls_bench PSK_FILE [CERT KEY] [N]     (CERT: self-signed; both sides pin it)
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lib/net/endpoint.h"
#include "lib/net/net.h"
#include "lib/net/tls.h"

namespace {

using Clock = std::chrono::steady_clock;

bool step_until(dl::TlsSession& c, dl::TlsSession& s, int cfd, int sfd) {
  dl::TlsIo rc = dl::TlsIo::want_write, rs = dl::TlsIo::want_read;
  for (int i = 0; i < 10000; ++i) {
    if (rc != dl::TlsIo::ok) rc = c.handshake();
    if (rs != dl::TlsIo::ok) rs = s.handshake();
    if (rc == dl::TlsIo::failed || rs == dl::TlsIo::failed) return false;
    if (rc == dl::TlsIo::ok && rs == dl::TlsIo::ok) return true;
    pollfd p[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
    ::poll(p, 2, 1);
  }
  return false;
}

bool exchange(dl::TlsSession& from, dl::TlsSession& to, int tofd) {
  std::uint8_t msg[104] = {0xD7};
  if (from.write(msg).bytes != sizeof msg) return false;
  while (from.has_pending_output()) from.flush();
  std::uint8_t buf[256];
  std::size_t got = 0;
  for (int i = 0; i < 10000 && got < sizeof msg; ++i) {
    auto r = to.read({buf, sizeof msg - got});
    if (r.status == dl::TlsIo::failed || r.status == dl::TlsIo::eof) return false;
    got += r.bytes;
    if (got < sizeof msg) {
      pollfd p{tofd, POLLIN, 0};
      ::poll(&p, 1, 1);
    }
  }
  return got == sizeof msg;
}

double one(const std::shared_ptr<dl::TlsConfig>& dial, const std::shared_ptr<dl::TlsConfig>& listen,
           const dl::Listener& l, bool* resumed) {
  auto t0 = Clock::now();
  auto c = dl::start_connect(l.local);
  if (!c) std::exit(1);
  pollfd p{c->get(), POLLOUT, 0};
  ::poll(&p, 1, 1000);
  if (!dl::finish_connect(c->get(), l.local)) std::exit(1);
  dl::SocketAddress peer;
  dl::Result<dl::Fd> s = dl::Fd();
  for (int i = 0; i < 1000; ++i) {
    s = dl::accept_one(l.fd.get(), &peer);
    if (!s || s->valid()) break;
    pollfd q{l.fd.get(), POLLIN, 0};
    ::poll(&q, 1, 1);
  }
  if (!s || !s->valid()) std::exit(1);
  dl::tune_stream_socket(c->get());
  dl::tune_stream_socket(s->get());
  dl::TlsSession cs(dial, c->get(), "listener"), ss(listen, s->get(), "dialer");
  if (!step_until(cs, ss, c->get(), s->get())) {
    std::fprintf(stderr, "tls_bench: %s / %s\n", cs.error().message().c_str(), ss.error().message().c_str());
    std::exit(1);
  }
  // The dialer's HELLO and the listener's answer (which also brings the session ticket).
  if (!exchange(cs, ss, s->get()) || !exchange(ss, cs, c->get())) std::exit(1);
  auto t1 = Clock::now();
  *resumed = cs.resumed();
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

void run(const char* name, const dl::TlsFlags& dial_flags, const dl::TlsFlags& listen_flags, int n) {
  auto listen = dl::TlsConfig::load(listen_flags, dl::TlsRole::listener);
  auto dial = dl::TlsConfig::load(dial_flags, dl::TlsRole::dialer);
  if (!listen || !dial) {
    std::fprintf(stderr, "tls_bench: %s\n", (!listen ? listen.error() : dial.error()).message().c_str());
    std::exit(1);
  }
  auto ep = dl::parse_listen_endpoint("127.0.0.1:0");
  auto l = dl::listen_on(*ep);
  if (!l) std::exit(1);
  std::vector<double> full, resumed;
  for (int i = 0; i < n; ++i) {
    bool r = false;
    (*dial)->forget_tickets();
    full.push_back(one(*dial, *listen, *l, &r));
    double t = one(*dial, *listen, *l, &r);
    if (r) resumed.push_back(t);
  }
  auto report = [&](const char* what, std::vector<double>& v) {
    if (v.empty()) {
      std::printf("%-36s %s\n", what, "none");
      return;
    }
    std::sort(v.begin(), v.end());
    std::printf("%s %-22s median %.3f ms  p90 %.3f ms  (%zu)\n", name, what, v[v.size() / 2], v[v.size() * 9 / 10],
                v.size());
  };
  report("full handshake", full);
  report("resumed handshake", resumed);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: tls_bench PSK_FILE [CERT KEY] [N]\n");
    return 2;
  }
  int n = 200;
  dl::TlsFlags psk;
  psk.psk_file = argv[1];
  if (argc == 3 || argc == 5) n = std::atoi(argv[argc - 1]);
  run("psk ", psk, psk, n);
  if (argc >= 4) {
    auto pin = dl::certificate_pin(argv[2]);
    if (!pin) return 1;
    dl::TlsFlags c;
    c.cert_file = argv[2];
    c.key_file = argv[3];
    c.pin = *pin;
    run("cert", c, c, n);
  }
  return 0;
}
