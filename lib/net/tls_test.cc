// TLS sessions over in-process socket pairs, with keys and certificates made at test time by the
// openssl command: a CA, a listener and a dialer certificate signed by it, an expired one, and a
// self-signed stranger.
#include "lib/net/tls.h"

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <array>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lib/base/fd.h"

using namespace dl;

namespace {

void sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  REQUIRE_MESSAGE(rc == 0, cmd);
}

struct Pki {
  std::string dir;
  Pki() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/tlsXXXXXX";
    dir = ::mkdtemp(tmpl.data());
    std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::string q = " >/dev/null 2>&1";
    sh("cd " + dir + " && umask 077 && openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -subj /CN=test-ca -days 3" + q);
    auto issue = [&](const std::string& name, const std::string& days) {
      sh("cd " + dir + " && umask 077 && openssl req " + ec + " -keyout " + name + ".key -out " + name +
         ".csr -subj /CN=" + name + q + " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > " + name +
         ".ext && openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days " + days +
         " -extfile " + name + ".ext -out " + name + ".pem" + q);
    };
    issue("server", "2");
    issue("client", "2");
    issue("expired", "-1");
    sh("cd " + dir + " && umask 077 && openssl req -x509 " + ec + " -keyout stranger.key -out stranger.pem -subj /CN=stranger -days 2" + q);
    sh("cd " + dir + " && chmod 644 *.pem");
  }
  std::string operator()(const std::string& f) const { return dir + "/" + f; }
};

const Pki& pki() {
  static Pki p;
  return p;
}

std::string write_psk(const std::string& name, const std::string& line, int mode = 0600) {
  std::string path = pki()(name);
  ::unlink(path.c_str());
  std::ofstream(path) << line << "\n";
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
  return path;
}

std::shared_ptr<TlsConfig> load(const TlsFlags& f, TlsRole role) {
  auto r = TlsConfig::load(f, role);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message()));
  return *r;
}

TlsFlags psk(const std::string& file) {
  TlsFlags f;
  f.psk_file = file;
  return f;
}

TlsFlags certs(const std::string& name, const std::string& ca, const std::string& pin = {}) {
  TlsFlags f;
  if (!name.empty()) {
    f.cert_file = pki()(name + ".pem");
    f.key_file = pki()(name + ".key");
  }
  if (!ca.empty()) f.ca_file = pki()(ca);
  f.pin = pin;
  return f;
}

struct SocketPair {
  Fd a, b;
  SocketPair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

// Two socket pairs joined by a relay the test pumps by hand: client <-> (x | y) <-> server. It can
// flip one bit in the client-to-server bytes at a chosen offset.
struct Relay {
  SocketPair left, right;  // left.a: client end, right.b: server end
  std::vector<std::uint8_t> up, down;
  std::uint64_t up_count = 0;
  std::int64_t flip_at = -1;
  int client_fd() const { return left.a.get(); }
  int server_fd() const { return right.b.get(); }
  void pump() {
    move(left.b.get(), right.a.get(), up, true);
    move(right.a.get(), left.b.get(), down, false);
  }
  void move(int from, int to, std::vector<std::uint8_t>& buf, bool is_up) {
    std::uint8_t tmp[65536];
    for (;;) {
      ssize_t n = ::recv(from, tmp, sizeof tmp, MSG_DONTWAIT);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n && is_up; ++i, ++up_count) {
        if (static_cast<std::int64_t>(up_count) == flip_at) tmp[i] ^= 0x10;
      }
      buf.insert(buf.end(), tmp, tmp + n);
    }
    while (!buf.empty()) {
      ssize_t n = ::send(to, buf.data(), buf.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      buf.erase(buf.begin(), buf.begin() + n);
    }
  }
};

bool terminal(TlsIo s) { return s == TlsIo::ok || s == TlsIo::failed; }

void wait_a_little(int fd1, int fd2) {
  pollfd p[2] = {{fd1, POLLIN, 0}, {fd2, POLLIN, 0}};
  ::poll(p, 2, 2);
}

struct Outcome {
  TlsIo client, server;
};

Outcome handshake(TlsSession& c, TlsSession& s, Relay* relay = nullptr, int fd1 = -1, int fd2 = -1) {
  TlsIo rc = TlsIo::want_write, rs = TlsIo::want_read;
  for (int i = 0; i < 2000 && !(terminal(rc) && terminal(rs)); ++i) {
    if (!terminal(rc)) rc = c.handshake();
    if (!terminal(rs)) rs = s.handshake();
    if (relay) relay->pump();
    // One side failed and the other waits for bytes that will never come: stop soon.
    if ((rc == TlsIo::failed || rs == TlsIo::failed) && i > 50) break;
    if (!(terminal(rc) && terminal(rs))) wait_a_little(fd1, fd2);
  }
  // TLS 1.3: a dialer finishes before the listener has checked its certificate; a refusal
  // reaches it as an alert on its first read.
  if (rc == TlsIo::ok && rs == TlsIo::failed) {
    std::uint8_t b[64];
    for (int i = 0; i < 100; ++i) {
      if (relay) relay->pump();
      TlsResult r = c.read(b);
      if (r.status == TlsIo::failed || r.status == TlsIo::eof) {
        rc = r.status;
        break;
      }
      wait_a_little(fd1, fd2);
    }
  }
  if (rc == TlsIo::failed) MESSAGE("client: " << c.error().message());
  if (rs == TlsIo::failed) MESSAGE("server: " << s.error().message());
  return {rc, rs};
}

// Moves `data` from `w` to `r`, both established; returns what `r` read (stops on failure).
std::vector<std::uint8_t> transfer(TlsSession& w, TlsSession& r, const std::vector<std::uint8_t>& data,
                                   Relay* relay, int fd1, int fd2, TlsIo* read_status = nullptr) {
  std::vector<std::uint8_t> got;
  std::size_t sent = 0;
  std::vector<std::uint8_t> buf(100000);
  for (int i = 0; i < 100000 && got.size() < data.size(); ++i) {
    if (sent < data.size()) {
      // Two iovecs of odd sizes, to exercise batching into records.
      std::size_t n1 = std::min<std::size_t>(777, data.size() - sent);
      std::size_t n2 = std::min<std::size_t>(50000, data.size() - sent - n1);
      iovec v[2] = {{const_cast<std::uint8_t*>(data.data() + sent), n1},
                    {const_cast<std::uint8_t*>(data.data() + sent + n1), n2}};
      TlsResult wr = w.writev(v);
      if (wr.status == TlsIo::failed) break;
      sent += wr.bytes;
    } else if (w.has_pending_output()) {
      w.flush();
    }
    if (relay) relay->pump();
    TlsResult rr = r.read(buf);
    if (read_status) *read_status = rr.status;
    if (rr.status == TlsIo::failed || rr.status == TlsIo::eof) break;
    got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(rr.bytes));
    if (rr.bytes == 0) wait_a_little(fd1, fd2);
  }
  return got;
}

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

std::string psk_a() { return write_psk("a.psk", "datalink 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"); }
std::string psk_b() { return write_psk("b.psk", "# another key\ndatalink ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"); }

// A bare OpenSSL peer, for what our own config refuses to present (an expired certificate).
struct RawServer {
  SSL_CTX* ctx;
  SSL* ssl;
  RawServer(int fd, const std::string& name) {
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    REQUIRE(SSL_CTX_use_certificate_file(ctx, pki()(name + ".pem").c_str(), SSL_FILETYPE_PEM) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx, pki()(name + ".key").c_str(), SSL_FILETYPE_PEM) == 1);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
  }
  ~RawServer() {
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  }
  bool done = false;
  void step() {
    if (!done && SSL_do_handshake(ssl) == 1) done = true;
    ERR_clear_error();
  }
};

}  // namespace

TEST_CASE("pre-shared key: the right key works both ways, byte-exact through many records") {
  SocketPair p;
  TlsSession c(load(psk(psk_a()), TlsRole::dialer), p.a.get(), "server");
  TlsSession s(load(psk(psk_a()), TlsRole::listener), p.b.get(), "client");
  auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
  REQUIRE(o.client == TlsIo::ok);
  REQUIRE(o.server == TlsIo::ok);
  CHECK_FALSE(c.resumed());
  CHECK(c.peer_identity() == "psk 'datalink'");
  auto data = random_bytes(1 << 20, 1);
  CHECK(transfer(c, s, data, nullptr, p.a.get(), p.b.get()) == data);
  auto back = random_bytes(100000, 2);
  CHECK(transfer(s, c, back, nullptr, p.a.get(), p.b.get()) == back);
  CHECK(c.wire_bytes_out() > data.size());
  // close_notify is an orderly end: the reader sees eof, not an error.
  CHECK(c.shutdown() == TlsIo::ok);
  std::uint8_t buf[16];
  TlsResult r;
  for (int i = 0; i < 100 && (r = s.read(buf)).status == TlsIo::want_read; ++i) wait_a_little(p.b.get(), p.b.get());
  CHECK(r.status == TlsIo::eof);
}

TEST_CASE("pre-shared key: a wrong key is refused on both sides, final, naming the cause") {
  SocketPair p;
  TlsSession c(load(psk(psk_a()), TlsRole::dialer), p.a.get(), "server");
  TlsSession s(load(psk(psk_b()), TlsRole::listener), p.b.get(), "client");
  auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
  REQUIRE(o.server == TlsIo::failed);
  REQUIRE(o.client == TlsIo::failed);
  CHECK(s.error().kind == ErrorKind::auth);
  CHECK(s.error().message().find("handshake failed: wrong pre-shared key") != std::string::npos);
  CHECK(c.error().message().find("handshake failed: wrong pre-shared key") != std::string::npos);
  CHECK_FALSE(is_retryable(c.error()));
  CHECK(exit_code(c.error().kind) == 10);
}

TEST_CASE("pre-shared key: an unknown identity and a peer with no key are refused") {
  {
    SocketPair p;
    auto other = write_psk("alice.psk", "alice 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    TlsSession c(load(psk(other), TlsRole::dialer), p.a.get(), "server");
    TlsSession s(load(psk(psk_a()), TlsRole::listener), p.b.get(), "client");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.server == TlsIo::failed);
    CHECK(s.error().message().find("unknown pre-shared key identity 'alice'") != std::string::npos);
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().kind == ErrorKind::auth);
  }
  {
    SocketPair p;
    TlsSession c(load(certs("client", "ca.pem"), TlsRole::dialer), p.a.get(), "server");
    TlsSession s(load(psk(psk_a()), TlsRole::listener), p.b.get(), "client");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.server == TlsIo::failed);
    CHECK(s.error().message().find("offered no pre-shared key") != std::string::npos);
    CHECK(o.client == TlsIo::failed);
  }
}

TEST_CASE("a peer that does not speak TLS is refused at the first bytes") {
  SocketPair p;
  TlsSession s(load(psk(psk_a()), TlsRole::listener), p.b.get(), "stranger");
  const char hello[] = " classic frame bytes from a stranger, and more of them ...";
  REQUIRE(::send(p.a.get(), hello, sizeof hello, 0) == static_cast<ssize_t>(sizeof hello));
  TlsIo r = TlsIo::want_read;
  for (int i = 0; i < 100 && r == TlsIo::want_read; ++i) r = s.handshake();
  REQUIRE(r == TlsIo::failed);
  CHECK(s.error().kind == ErrorKind::auth);
  CHECK(s.error().message().find("does not speak TLS") != std::string::npos);

  SocketPair q;
  TlsSession c(load(psk(psk_a()), TlsRole::dialer), q.a.get(), "plain listener");
  CHECK(c.handshake() == TlsIo::want_read);
  REQUIRE(::send(q.b.get(), hello, sizeof hello, 0) > 0);
  r = TlsIo::want_read;
  for (int i = 0; i < 100 && r == TlsIo::want_read; ++i) r = c.handshake();
  REQUIRE(r == TlsIo::failed);
  CHECK(c.error().message().find("does not speak TLS") != std::string::npos);
}

TEST_CASE("certificates: mutual authentication through a CA, with the host name checked") {
  SocketPair p;
  TlsSession c(load(certs("client", "ca.pem"), TlsRole::dialer), p.a.get(), "127.0.0.1:9", "127.0.0.1");
  TlsSession s(load(certs("server", "ca.pem"), TlsRole::listener), p.b.get(), "127.0.0.1:5");
  auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
  REQUIRE(o.client == TlsIo::ok);
  REQUIRE(o.server == TlsIo::ok);
  CHECK(c.peer_identity().find("CN=server") != std::string::npos);
  CHECK(s.peer_identity().find("CN=client") != std::string::npos);
  auto data = random_bytes(300000, 3);
  CHECK(transfer(c, s, data, nullptr, p.a.get(), p.b.get()) == data);

  SocketPair q;
  TlsSession c2(load(certs("client", "ca.pem"), TlsRole::dialer), q.a.get(), "example.org:9", "example.org");
  TlsSession s2(load(certs("server", "ca.pem"), TlsRole::listener), q.b.get(), "client");
  o = handshake(c2, s2, nullptr, q.a.get(), q.b.get());
  REQUIRE(o.client == TlsIo::failed);
  CHECK(c2.error().message().find("does not name the host") != std::string::npos);
}

TEST_CASE("certificates: untrusted and expired peers are refused") {
  SUBCASE("a self-signed stranger as listener") {
    SocketPair p;
    TlsSession c(load(certs("client", "ca.pem"), TlsRole::dialer), p.a.get(), "stranger", "127.0.0.1");
    TlsSession s(load(certs("stranger", "ca.pem"), TlsRole::listener), p.b.get(), "client");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().kind == ErrorKind::auth);
    CHECK(c.error().message().find("untrusted certificate") != std::string::npos);
    CHECK_FALSE(is_retryable(c.error()));
  }
  SUBCASE("a self-signed stranger as dialer") {
    SocketPair p;
    auto server_pin = certificate_pin(pki()("server.pem"));
    REQUIRE(server_pin.ok());
    TlsSession c(load(certs("stranger", "", *server_pin), TlsRole::dialer), p.a.get(), "server");
    TlsSession s(load(certs("server", "ca.pem"), TlsRole::listener), p.b.get(), "stranger");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.server == TlsIo::failed);
    CHECK(s.error().message().find("untrusted certificate") != std::string::npos);
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().message().find("refused our certificate") != std::string::npos);
  }
  SUBCASE("an expired listener certificate") {
    SocketPair p;
    TlsSession c(load(certs("client", "ca.pem"), TlsRole::dialer), p.a.get(), "server", "127.0.0.1");
    RawServer s(p.b.get(), "expired");
    TlsIo rc = TlsIo::want_write;
    for (int i = 0; i < 200 && !terminal(rc); ++i) {
      rc = c.handshake();
      s.step();
    }
    REQUIRE(rc == TlsIo::failed);
    CHECK(c.error().message().find("certificate expired") != std::string::npos);
    CHECK(c.error().id == "tls-cert-expired");
  }
  SUBCASE("our own expired certificate is refused at load") {
    auto r = TlsConfig::load(certs("expired", "ca.pem"), TlsRole::listener);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::auth);
    CHECK(r.error().message().find("certificate expired") != std::string::npos);
  }
  SUBCASE("a dialer without a certificate, to a listener that requires one") {
    SocketPair p;
    TlsSession c(load(certs("", "ca.pem"), TlsRole::dialer), p.a.get(), "server", "127.0.0.1");
    TlsSession s(load(certs("server", "ca.pem"), TlsRole::listener), p.b.get(), "client");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.server == TlsIo::failed);
    CHECK(s.error().message().find("sent no certificate") != std::string::npos);
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().message().find("requires a client certificate") != std::string::npos);
  }
}

TEST_CASE("pinning: exactly one peer key is accepted, on either side") {
  auto stranger_pin = certificate_pin(pki()("stranger.pem"));
  auto client_pin = certificate_pin(pki()("client.pem"));
  REQUIRE(stranger_pin.ok());
  REQUIRE(client_pin.ok());
  CHECK(stranger_pin->rfind("sha256:", 0) == 0);
  {
    SocketPair p;  // self-signed listener, pinned by the dialer; the listener pins the dialer
    TlsSession c(load(certs("client", "", *stranger_pin), TlsRole::dialer), p.a.get(), "s");
    TlsSession s(load(certs("stranger", "", *client_pin), TlsRole::listener), p.b.get(), "c");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.client == TlsIo::ok);
    REQUIRE(o.server == TlsIo::ok);
  }
  {
    SocketPair p;  // the dialer pins another key
    TlsSession c(load(certs("client", "", *client_pin), TlsRole::dialer), p.a.get(), "s");
    TlsSession s(load(certs("stranger", "", *client_pin), TlsRole::listener), p.b.get(), "c");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().message().find("peer certificate does not match --pin") != std::string::npos);
    CHECK(c.error().kind == ErrorKind::auth);
  }
  {
    SocketPair p;  // the listener pins another dialer key
    TlsSession c(load(certs("server", "", *stranger_pin), TlsRole::dialer), p.a.get(), "s");
    TlsSession s(load(certs("stranger", "", *client_pin), TlsRole::listener), p.b.get(), "c");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.server == TlsIo::failed);
    CHECK(s.error().message().find("peer certificate does not match --pin") != std::string::npos);
    REQUIRE(o.client == TlsIo::failed);
    CHECK(c.error().message().find("refused our certificate") != std::string::npos);
  }
  // Hex works as well as base64, with or without colons.
  TlsFlags f = certs("client", "", "");
  f.pin = std::string(64, 'a');
  CHECK(TlsConfig::load(f, TlsRole::dialer).ok());
  f.pin = "not-a-pin";
  auto bad = TlsConfig::load(f, TlsRole::dialer);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == ErrorKind::usage);
}

TEST_CASE("a flipped bit in a record is detected and is retryable") {
  Relay relay;
  TlsSession c(load(psk(psk_a()), TlsRole::dialer), relay.client_fd(), "server");
  TlsSession s(load(psk(psk_a()), TlsRole::listener), relay.server_fd(), "client");
  auto o = handshake(c, s, &relay, relay.client_fd(), relay.server_fd());
  REQUIRE(o.client == TlsIo::ok);
  REQUIRE(o.server == TlsIo::ok);
  relay.flip_at = static_cast<std::int64_t>(relay.up_count) + 20000;  // inside the second record
  auto data = random_bytes(200000, 4);
  TlsIo status = TlsIo::ok;
  auto got = transfer(c, s, data, &relay, relay.client_fd(), relay.server_fd(), &status);
  REQUIRE(status == TlsIo::failed);
  CHECK(got.size() < data.size());
  CHECK(std::equal(got.begin(), got.end(), data.begin()));  // nothing damaged was delivered
  CHECK(s.error().kind == ErrorKind::protocol);
  CHECK(s.error().id == "tls-bad-record");
  CHECK(is_retryable(s.error()));
}

TEST_CASE("session resumption: a reconnecting dialer resumes from its ticket") {
  auto check = [](const TlsFlags& dial, const TlsFlags& listen) {
    auto cc = load(dial, TlsRole::dialer);
    auto sc = load(listen, TlsRole::listener);
    for (int round = 0; round < 3; ++round) {
      SocketPair p;
      TlsSession c(cc, p.a.get(), "127.0.0.1:5", "127.0.0.1");
      TlsSession s(sc, p.b.get(), "client");
      auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
      REQUIRE(o.client == TlsIo::ok);
      REQUIRE(o.server == TlsIo::ok);
      CHECK(c.resumed() == (round > 0));
      CHECK(s.resumed() == (round > 0));
      // The ticket arrives after the handshake: reading anything takes it in.
      auto data = random_bytes(1000, 5);
      CHECK(transfer(s, c, data, nullptr, p.a.get(), p.b.get()) == data);
    }
    // A restarted listener (new ticket keys) refuses the ticket: a full handshake, still fine.
    auto restarted = load(listen, TlsRole::listener);
    SocketPair p;
    TlsSession c(cc, p.a.get(), "127.0.0.1:5", "127.0.0.1");
    TlsSession s(restarted, p.b.get(), "client");
    auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
    REQUIRE(o.client == TlsIo::ok);
    CHECK_FALSE(c.resumed());
  };
  SUBCASE("pre-shared key") { check(psk(psk_a()), psk(psk_a())); }
  SUBCASE("certificates") { check(certs("client", "ca.pem"), certs("server", "ca.pem")); }
}

TEST_CASE("insecure or impossible setups are refused before any connection") {
  auto expect = [](const TlsFlags& f, TlsRole role, ErrorKind kind, const std::string& text) {
    auto r = TlsConfig::load(f, role);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == kind);
    CHECK_MESSAGE(r.error().message().find(text) != std::string::npos, r.error().message());
  };
  TlsFlags mixed = certs("client", "ca.pem");
  mixed.psk_file = psk_a();
  expect(mixed, TlsRole::dialer, ErrorKind::usage, "cannot be combined");
  expect(certs("client", ""), TlsRole::dialer, ErrorKind::usage, "needs --ca or --pin to verify the listener");
  expect(certs("server", ""), TlsRole::listener, ErrorKind::usage, "anyone could connect");
  expect(certs("", "ca.pem"), TlsRole::listener, ErrorKind::usage, "needs its own --cert and --key");
  TlsFlags half;
  half.cert_file = pki()("client.pem");
  half.ca_file = pki()("ca.pem");
  expect(half, TlsRole::dialer, ErrorKind::usage, "--cert and --key go together");

  auto open_psk = write_psk("open.psk", "00112233445566778899aabbccddeeff", 0644);
  expect(psk(open_psk), TlsRole::dialer, ErrorKind::auth, "permissions 0644 are too open");
  auto group_psk = write_psk("group.psk", "00112233445566778899aabbccddeeff", 0640);
  expect(psk(group_psk), TlsRole::listener, ErrorKind::auth, "too open");
  expect(psk(pki()("missing.psk")), TlsRole::dialer, ErrorKind::auth, "No such file");
  expect(psk(write_psk("short.psk", "0011")), TlsRole::dialer, ErrorKind::auth, "16 to 48");
  expect(psk(write_psk("junk.psk", "this is not a key!")), TlsRole::dialer, ErrorKind::auth, "[IDENTITY ]KEY");
  expect(psk(write_psk("empty.psk", "# nothing")), TlsRole::dialer, ErrorKind::auth, "no key");

  std::string key = pki()("client.key");
  ::chmod(key.c_str(), 0644);
  expect(certs("client", "ca.pem"), TlsRole::dialer, ErrorKind::auth, "too open");
  ::chmod(key.c_str(), 0600);
  TlsFlags wrong_key = certs("client", "ca.pem");
  wrong_key.key_file = pki()("server.key");
  expect(wrong_key, TlsRole::dialer, ErrorKind::auth, "does not belong to the certificate");
  TlsFlags bad_ca = certs("client", "");
  bad_ca.ca_file = psk_a();
  expect(bad_ca, TlsRole::dialer, ErrorKind::auth, "no PEM certificate");
}

TEST_CASE("--gen-psk writes a new 256-bit key readable by its owner only, and never replaces one") {
  std::string path = pki()("gen.psk");
  ::unlink(path.c_str());
  REQUIRE(generate_psk_file(path).ok());
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(TlsConfig::load(psk(path), TlsRole::dialer).ok());
  auto again = generate_psk_file(path);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().kind == ErrorKind::usage);
  std::string other = pki()("gen2.psk");
  ::unlink(other.c_str());
  REQUIRE(generate_psk_file(other).ok());
  std::ifstream a(path), b(other);
  std::string la((std::istreambuf_iterator<char>(a)), {}), lb((std::istreambuf_iterator<char>(b)), {});
  CHECK(la != lb);
  CHECK(la.size() > 64);

  // --gen-psk in a config: creates the file the first time, then uses it as it is.
  std::string third = pki()("gen3.psk");
  ::unlink(third.c_str());
  TlsFlags g;
  g.gen_psk_file = third;
  auto first = TlsConfig::load(g, TlsRole::listener);
  REQUIRE(first.ok());
  std::ifstream t1(third);
  std::string k1((std::istreambuf_iterator<char>(t1)), {});
  REQUIRE(TlsConfig::load(g, TlsRole::dialer).ok());
  std::ifstream t2(third);
  std::string k2((std::istreambuf_iterator<char>(t2)), {});
  CHECK(k1 == k2);
  SocketPair p;
  TlsSession c(load(psk(third), TlsRole::dialer), p.a.get(), "server");
  TlsSession s(*first, p.b.get(), "client");
  auto o = handshake(c, s, nullptr, p.a.get(), p.b.get());
  CHECK(o.client == TlsIo::ok);
  CHECK(o.server == TlsIo::ok);
  g.psk_file = third;
  auto both = TlsConfig::load(g, TlsRole::dialer);
  REQUIRE_FALSE(both.ok());
  CHECK(both.error().kind == ErrorKind::usage);
}

// Runs `child` in two forked processes released at the same instant; returns their exit codes.
static std::array<int, 2> race_two(const std::function<int()>& child) {
  int go[2];
  REQUIRE(::pipe(go) == 0);
  pid_t kids[2];
  for (pid_t& k : kids) {
    k = ::fork();
    REQUIRE(k >= 0);
    if (k == 0) {
      char c;
      if (::read(go[0], &c, 1) != 1) ::_exit(3);
      ::_exit(child());
    }
  }
  ::close(go[0]);
  REQUIRE(::write(go[1], "gg", 2) == 2);
  ::close(go[1]);
  std::array<int, 2> codes{};
  for (int i = 0; i < 2; ++i) {
    int st = 0;
    REQUIRE(::waitpid(kids[i], &st, 0) == kids[i]);
    REQUIRE(WIFEXITED(st));
    codes[i] = WEXITSTATUS(st);
    REQUIRE(codes[i] != 3);
  }
  return codes;
}

// Two tools started together with --gen-psk on the same missing file (a script starting both
// sides on one machine) both find it missing. Only one may create it: the other must not replace
// the key the first one already uses.
TEST_CASE("--gen-psk racing another process: one creates the file, the other never replaces it") {
  int both_created = 0;
  for (int round = 0; round < 20; ++round) {
    std::string path = pki()("race-" + std::to_string(round) + ".psk");
    ::unlink(path.c_str());
    auto codes = race_two([&] { return generate_psk_file(path).ok() ? 0 : 1; });
    int created = (codes[0] == 0) + (codes[1] == 0);
    CHECK(created >= 1);
    if (created == 2) ++both_created;
    // The loser of the race, as a tool, uses the winner's file.
    TlsFlags g;
    g.gen_psk_file = path;
    CHECK(TlsConfig::load(g, TlsRole::dialer).ok());
  }
  CHECK(both_created == 0);

  // Two tools racing through TlsConfig::load: the loser of the race uses the winner's file
  // instead of failing with "the file exists".
  for (int round = 0; round < 10; ++round) {
    std::string path = pki()("race-load-" + std::to_string(round) + ".psk");
    ::unlink(path.c_str());
    auto codes = race_two([&] {
      TlsFlags g;
      g.gen_psk_file = path;
      return TlsConfig::load(g, TlsRole::dialer).ok() ? 0 : 1;
    });
    CHECK(codes[0] == 0);
    CHECK(codes[1] == 0);
  }
}
