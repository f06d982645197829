#include "lib/net/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lib/base/atomic_file.h"
#include "lib/base/random.h"
#include "lib/net/tls_keys.h"

namespace dl {
namespace {

constexpr std::size_t kRecordPlain = 16 * 1024;   // TLS's largest record payload
constexpr std::size_t kReadBuffer = 128 * 1024;   // read-ahead: many records per recv()
constexpr std::size_t kFileLimit = 1u << 20;
// TLS_AES_128_GCM_SHA256 first: fastest with AES-NI and plenty strong; an external PSK is
// bound to one hash, and this is its suite.
constexpr const char* kSuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
const unsigned char kPskSuite[2] = {0x13, 0x01};
const unsigned char kSessionContext[] = "datalink";

std::string to_base64(std::span<const std::uint8_t> b) {
  std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), b.data(), static_cast<int>(b.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::vector<std::uint8_t> spki_sha256(X509* cert) {
  std::vector<std::uint8_t> out;
  unsigned char* der = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (len <= 0) return out;
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (EVP_Digest(der, static_cast<std::size_t>(len), md, &mdlen, EVP_sha256(), nullptr) == 1) {
    out.assign(md, md + mdlen);
  }
  OPENSSL_free(der);
  return out;
}

std::string pin_text(std::span<const std::uint8_t> digest) { return "sha256:" + to_base64(digest); }

std::string subject_of(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  std::string s = buf;
  if (!s.empty() && s[0] == '/') s.erase(0, 1);
  return s;
}

std::string asn1_time_text(const ASN1_TIME* t) {
  BIO* b = BIO_new(BIO_s_mem());
  ASN1_TIME_print(b, t);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<std::size_t>(n));
  BIO_free(b);
  return s;
}

// The first OpenSSL error's reason text, and clears the queue.
std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  std::string s;
  if (e != 0) {
    const char* r = ERR_reason_error_string(e);
    s = r ? r : "error " + std::to_string(ERR_GET_REASON(e));
  }
  ERR_clear_error();
  return s;
}

// A credential file: readable, and (for secrets) not open to group or others, as ssh insists.
Result<std::string> read_credential(const std::string& path, const char* flag, bool secret) {
  std::string ctx = std::string(flag) + " " + path;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    Error e = errno_error(ErrorKind::auth, ctx, errno);
    e.final = true;
    return e;
  }
  if (!S_ISREG(st.st_mode)) return auth_error(ctx, "not a regular file");
  if (secret && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return auth_error(ctx, std::string("permissions ") + mode +
                               " are too open: group or others may read this secret (chmod 600 " + path + ")");
  }
  auto text = read_small_file(path, kFileLimit);
  if (!text) {
    Error e = text.error();
    e.kind = ErrorKind::auth;
    e.context = ctx;
    e.final = true;
    return e;
  }
  return text;
}

TlsSession* session_of(SSL* ssl) { return static_cast<TlsSession*>(SSL_get_app_data(ssl)); }
TlsConfig* config_of(SSL* ssl) { return static_cast<TlsConfig*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))); }

SSL_SESSION* make_psk_session(SSL* ssl, std::span<const std::uint8_t> key) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskSuite);
  if (!cipher) return nullptr;
  SSL_SESSION* s = SSL_SESSION_new();
  if (!s || !SSL_SESSION_set1_master_key(s, key.data(), key.size()) ||
      !SSL_SESSION_set_cipher(s, cipher) || !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) ||
      !SSL_SESSION_set1_id_context(s, kSessionContext, sizeof kSessionContext - 1)) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

std::shared_ptr<SSL_SESSION> share(SSL_SESSION* s) {
  return std::shared_ptr<SSL_SESSION>(s, [](SSL_SESSION* p) { SSL_SESSION_free(p); });
}

}  // namespace

// ------------------------------------------------------------------------------ socket BIO
// A BIO over the caller's socket: send() with MSG_NOSIGNAL (a dead peer is an error, never a
// signal), wire byte counts, and errno kept for the error message.
struct TlsSession::Io {
  static TlsSession* of(BIO* b) { return static_cast<TlsSession*>(BIO_get_data(b)); }
  static int write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
    TlsSession* s = of(b);
    BIO_clear_retry_flags(b);
    for (;;) {
      ssize_t n = ::send(s->fd_, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        *written = static_cast<std::size_t>(n);
        s->wire_out_ += static_cast<std::uint64_t>(n);
        return 1;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
      else s->last_errno_ = errno;
      return 0;
    }
  }
  static int read(BIO* b, char* data, std::size_t len, std::size_t* got) {
    TlsSession* s = of(b);
    BIO_clear_retry_flags(b);
    for (;;) {
      ssize_t n = ::recv(s->fd_, data, len, MSG_DONTWAIT);
      if (n > 0) {
        *got = static_cast<std::size_t>(n);
        s->wire_in_ += static_cast<std::uint64_t>(n);
        return 1;
      }
      if (n == 0) {
        s->eof_seen_ = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
      else s->last_errno_ = errno;
      return 0;
    }
  }
  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH: return 1;
      case BIO_CTRL_EOF: return of(b)->eof_seen_ ? 1 : 0;
      case BIO_CTRL_PENDING:
      case BIO_CTRL_WPENDING: return 0;
      default: return 0;
    }
  }
  static BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* x = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dl socket");
      BIO_meth_set_write_ex(x, write);
      BIO_meth_set_read_ex(x, read);
      BIO_meth_set_ctrl(x, ctrl);
      BIO_meth_set_create(x, [](BIO* b) {
        BIO_set_init(b, 1);
        return 1;
      });
      return x;
    }();
    return m;
  }
};

// ------------------------------------------------------------------------------ callbacks
// The callbacks need TlsConfig's private parts: they live in this struct, a friend by name.
struct TlsCallbacks {
  static int use_psk(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* idlen,
                     SSL_SESSION** sess) {
    TlsConfig* cfg = config_of(ssl);
    *sess = nullptr;
    SSL_SESSION* s = make_psk_session(ssl, cfg->psk_key_);
    if (!s) return 0;
    if (md != nullptr && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
      SSL_SESSION_free(s);  // a HelloRetryRequest chose another hash: our key cannot be used
      return 1;
    }
    *id = reinterpret_cast<const unsigned char*>(cfg->psk_identity_.data());
    *idlen = cfg->psk_identity_.size();
    *sess = s;
    session_of(ssl)->psk_offered_ = true;
    return 1;
  }
  // Listener, PSK mode: find the key by identity. An unknown identity is not fatal here: it
  // may be a resumption ticket, which OpenSSL tries next.
  static int find_psk(SSL* ssl, const unsigned char* identity, std::size_t len, SSL_SESSION** sess) {
    TlsConfig* cfg = config_of(ssl);
    TlsSession* ts = session_of(ssl);
    *sess = nullptr;
    std::string_view id(reinterpret_cast<const char*>(identity), len);
    if (id != cfg->psk_identity_) {
      ts->psk_unknown_identity_ = true;
      std::string shown;
      for (char c : id.substr(0, 40)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
      ts->unknown_identity_ = shown;
      return 1;
    }
    ts->psk_offered_ = true;
    *sess = make_psk_session(ssl, cfg->psk_key_);
    return *sess ? 1 : 0;
  }
  static int new_ticket(SSL* ssl, SSL_SESSION* s) {
    TlsConfig* cfg = config_of(ssl);
    TlsSession* ts = session_of(ssl);
    if (ts) ts->peer_spoke_ = true;
    if (!ts || !SSL_SESSION_is_resumable(s)) return 0;
    // A copy: OpenSSL marks the connection's own session unusable when the connection is freed
    // without close_notify, which is exactly how a cut connection ends.
    if (SSL_SESSION* copy = SSL_SESSION_dup(s)) cfg->tickets_[ts->peer_key_] = share(copy);
    return 0;
  }
  // Replaces OpenSSL's chain check: the CA (when given), then the pin (when given), and in
  // pin-only mode the leaf's validity dates. PSK mode accepts no certificate at all.
  static int verify(X509_STORE_CTX* store, void*) {
    SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    TlsConfig* cfg = config_of(ssl);
    TlsSession* ts = session_of(ssl);
    X509* leaf = X509_STORE_CTX_get0_cert(store);
    if (cfg->psk() || !leaf) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
    if (cfg->have_ca_) {
      if (X509_verify_cert(store) != 1) return 0;
    } else {
      if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_HAS_EXPIRED);
        return 0;
      }
      if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_NOT_YET_VALID);
        return 0;
      }
    }
    if (!cfg->pin_.empty() && spki_sha256(leaf) != cfg->pin_) {
      if (ts) ts->pin_mismatch_ = true;
      X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
      return 0;
    }
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }
};

// ------------------------------------------------------------------------------ TlsConfig

Status generate_psk_file(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    return usage_error("--gen-psk " + path, "the file exists; remove it first (a key in use is never replaced)");
  }
  std::uint8_t key[32];
  secure_random(key);
  std::string text = "# datalink pre-shared key (dl-security(7)); keep it secret, the same file on both sides\n";
  text += std::string(kDefaultPskIdentity) + " " + to_hex(key) + "\n";
  OPENSSL_cleanse(key, sizeof key);
  auto st2 = write_file_atomically(path, text, "--gen-psk", true, 0600, /*replace=*/false);
  OPENSSL_cleanse(text.data(), text.size());
  if (!st2 && st2.error().sys_errno == EEXIST) {
    return usage_error("--gen-psk " + path, "the file exists; remove it first (a key in use is never replaced)");
  }
  if (!st2) return st2.error();
  ::chmod(path.c_str(), 0600);  // whatever the umask did
  return ok_status();
}

Result<std::string> certificate_pin(const std::string& cert_file) {
  auto text = read_credential(cert_file, "--cert", false);
  if (!text) return text.error();
  BIO* b = BIO_new_mem_buf(text->data(), static_cast<int>(text->size()));
  X509* cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (!cert) return auth_error("--cert " + cert_file, "not a PEM certificate: " + openssl_reason());
  std::string pin = pin_text(spki_sha256(cert));
  X509_free(cert);
  return pin;
}

Status TlsConfig::check(const TlsFlags& f, TlsRole role) {
  if (!f.psk_file.empty() && !f.gen_psk_file.empty()) {
    return usage_error("--psk, --gen-psk", "choose one (--gen-psk FILE uses FILE like --psk once it exists)");
  }
  bool has_psk = !f.psk_file.empty() || !f.gen_psk_file.empty();
  bool certs = !f.cert_file.empty() || !f.key_file.empty() || !f.ca_file.empty() || !f.pin.empty();
  if (has_psk && certs) {
    return usage_error(f.psk_file.empty() ? "--gen-psk" : "--psk",
                       "cannot be combined with --cert, --key, --ca or --pin: use a pre-shared key or certificates");
  }
  if (f.cert_file.empty() != f.key_file.empty()) {
    return usage_error(f.cert_file.empty() ? "--key" : "--cert", "--cert and --key go together");
  }
  bool verify = !f.ca_file.empty() || !f.pin.empty();
  if (!has_psk) {
    if (role == TlsRole::dialer && !verify) {
      return usage_error("--cert", "a dialer needs --ca or --pin to verify the listener (or use --psk)");
    }
    if (role == TlsRole::listener && f.cert_file.empty()) {
      return usage_error(f.ca_file.empty() ? "--pin" : "--ca",
                         "a listener with keys needs its own --cert and --key (or use --psk)");
    }
    if (role == TlsRole::listener && !verify) {
      return usage_error("--cert", "a listener needs --ca or --pin to verify dialers; without them anyone could connect");
    }
  }
  if (!f.pin.empty()) {
    if (auto pin = parse_pin_text(f.pin); !pin) return pin.error();
  }
  return ok_status();
}

Result<std::shared_ptr<TlsConfig>> TlsConfig::load(const TlsFlags& given, TlsRole role) {
  if (auto st = check(given, role); !st) return st.error();
  TlsFlags f = given;
  if (!f.gen_psk_file.empty()) {
    struct stat st{};
    if (::lstat(f.gen_psk_file.c_str(), &st) != 0) {
      // Another process may create it at the same moment (both sides started together): then
      // its key is the one, as if the file had existed.
      if (auto g = generate_psk_file(f.gen_psk_file); !g && ::lstat(f.gen_psk_file.c_str(), &st) != 0) {
        return g.error();
      }
    }
    f.psk_file = f.gen_psk_file;
  }
  std::shared_ptr<TlsConfig> cfg(new TlsConfig());
  cfg->role_ = role;
  if (!f.pin.empty()) {
    auto pin = parse_pin_text(f.pin);
    if (!pin) return pin.error();
    cfg->pin_ = std::move(*pin);
  }
  if (auto st = cfg->build(f); !st) return st.error();
  return cfg;
}

Status TlsConfig::build(const TlsFlags& f) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(role_ == TlsRole::listener ? TLS_server_method() : TLS_client_method());
  if (!ctx_) return make_error(ErrorKind::io, "TLS", "cannot create a context: " + openssl_reason());
  SSL_CTX_set_app_data(ctx_, this);
  SSL_CTX_set_min_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx_, kSuites);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx_, 1);
  SSL_CTX_set_default_read_buffer_len(ctx_, kReadBuffer);
  // No renegotiation-era options matter in 1.3; no compression; no 0-RTT (replayable).
  SSL_CTX_set_options(ctx_, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_id_context(ctx_, kSessionContext, sizeof kSessionContext - 1);
  if (role_ == TlsRole::dialer) {
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx_, &TlsCallbacks::new_ticket);
  } else {
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);  // stateless tickets only
    SSL_CTX_set_num_tickets(ctx_, 1);
  }
  SSL_CTX_set_cert_verify_callback(ctx_, &TlsCallbacks::verify, nullptr);

  if (!f.psk_file.empty()) {
    auto text = read_credential(f.psk_file, "--psk", true);
    if (!text) return text.error();
    auto psk = parse_psk_text(*text, f.psk_file);
    OPENSSL_cleanse(text->data(), text->size());
    if (!psk) return psk.error();
    psk_key_ = std::move(psk->key);
    psk_identity_ = std::move(psk->identity);
    if (role_ == TlsRole::dialer) SSL_CTX_set_psk_use_session_callback(ctx_, &TlsCallbacks::use_psk);
    else SSL_CTX_set_psk_find_session_callback(ctx_, &TlsCallbacks::find_psk);
    // A dialer verifies "peer" certificates too: in PSK mode none is acceptable, so a listener
    // that ignores the key and shows a certificate instead is refused.
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    return ok_status();
  }

  if (!f.cert_file.empty()) {
    auto cert_text = read_credential(f.cert_file, "--cert", false);
    if (!cert_text) return cert_text.error();
    auto key_text = read_credential(f.key_file, "--key", true);
    if (!key_text) return key_text.error();
    OPENSSL_cleanse(key_text->data(), key_text->size());
    if (SSL_CTX_use_certificate_chain_file(ctx_, f.cert_file.c_str()) != 1) {
      // A certificate OpenSSL's security level refuses is no malformed file: say why instead.
      int why = ERR_GET_REASON(ERR_peek_last_error());
      if (why == SSL_R_EE_KEY_TOO_SMALL || why == SSL_R_CA_KEY_TOO_SMALL || why == SSL_R_CA_MD_TOO_WEAK) {
        return auth_error("--cert " + f.cert_file, "too weak for OpenSSL's security level: " + openssl_reason() +
                                                       " (an EC P-256 key as in dl-security(7), or RSA of 2048 bits or more)");
      }
      return auth_error("--cert " + f.cert_file, "not a PEM certificate: " + openssl_reason());
    }
    // An encrypted key would make OpenSSL ask for its passphrase on the terminal, or read it
    // from stdin (the data we were asked to send) when there is none: refuse it instead.
    bool wants_passphrase = false;
    SSL_CTX_set_default_passwd_cb_userdata(ctx_, &wants_passphrase);
    SSL_CTX_set_default_passwd_cb(ctx_, [](char*, int, int, void* asked) {
      *static_cast<bool*>(asked) = true;
      return -1;
    });
    int used = SSL_CTX_use_PrivateKey_file(ctx_, f.key_file.c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_set_default_passwd_cb(ctx_, nullptr);
    SSL_CTX_set_default_passwd_cb_userdata(ctx_, nullptr);
    if (used != 1 && wants_passphrase) {
      ERR_clear_error();
      return auth_error("--key " + f.key_file,
                        "encrypted with a passphrase, which the tools do not ask for: store it decrypted, mode 0600 "
                        "(openssl pkey -in KEY -out PLAIN)");
    }
    if (used != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        return auth_error("--key " + f.key_file, "does not belong to the certificate in --cert " + f.cert_file);
      }
      return auth_error("--key " + f.key_file, "not a PEM private key: " + openssl_reason());
    }
    if (SSL_CTX_check_private_key(ctx_) != 1) {
      ERR_clear_error();
      return auth_error("--key " + f.key_file, "does not belong to the certificate in --cert " + f.cert_file);
    }
    X509* own = SSL_CTX_get0_certificate(ctx_);
    if (X509_cmp_current_time(X509_get0_notAfter(own)) < 0) {
      return auth_error("--cert " + f.cert_file, "certificate expired on " + asn1_time_text(X509_get0_notAfter(own)));
    }
    own_pin_ = pin_text(spki_sha256(own));
    have_cert_ = true;
  }
  if (!f.ca_file.empty()) {
    auto ca_text = read_credential(f.ca_file, "--ca", false);
    if (!ca_text) return ca_text.error();
    if (ca_text->find("-----BEGIN CERTIFICATE-----") == std::string::npos ||
        SSL_CTX_load_verify_locations(ctx_, f.ca_file.c_str(), nullptr) != 1) {
      ERR_clear_error();
      return auth_error("--ca " + f.ca_file, "no PEM certificate in the file");
    }
    have_ca_ = true;
  }
  int mode = SSL_VERIFY_PEER;
  if (role_ == TlsRole::listener) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx_, mode, nullptr);
  return ok_status();
}

TlsConfig::~TlsConfig() {
  tickets_.clear();
  if (ctx_) SSL_CTX_free(ctx_);
  OPENSSL_cleanse(psk_key_.data(), psk_key_.size());
}

std::string TlsConfig::describe() const {
  if (psk()) return "pre-shared key '" + psk_identity_ + "'";
  std::string s = have_cert_ ? "certificate" : "no certificate";
  std::string who = role_ == TlsRole::listener ? "dialers" : "listener";
  if (have_ca_ && !pin_.empty()) s += ", " + who + " verified by --ca and --pin";
  else if (have_ca_) s += ", " + who + " verified by --ca";
  else if (!pin_.empty()) s += ", " + who + " pinned";
  return s;
}

std::shared_ptr<SSL_SESSION> TlsConfig::ticket_for(const std::string& peer) const {
  auto it = tickets_.find(peer);
  return it == tickets_.end() ? nullptr : it->second;
}

// ------------------------------------------------------------------------------ TlsSession

TlsSession::TlsSession(std::shared_ptr<TlsConfig> config, int fd, std::string peer, std::string verify_host)
    : config_(std::move(config)), fd_(fd), peer_(std::move(peer)) {
  peer_key_ = verify_host.empty() ? peer_ : verify_host + "|" + peer_;
  ssl_ = SSL_new(config_->ctx_);
  SSL_set_app_data(ssl_, this);
  BIO* bio = BIO_new(Io::method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  if (config_->role_ == TlsRole::listener) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (config_->have_ca_ && !verify_host.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      in6_addr a6;
      in_addr a4;
      if (inet_pton(AF_INET, verify_host.c_str(), &a4) == 1 || inet_pton(AF_INET6, verify_host.c_str(), &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(param, verify_host.c_str());
      } else {
        X509_VERIFY_PARAM_set1_host(param, verify_host.c_str(), 0);
        SSL_set_tlsext_host_name(ssl_, verify_host.c_str());
      }
    }
    offered_ticket_ = config_->ticket_for(peer_key_);
    if (offered_ticket_) SSL_set_session(ssl_, offered_ticket_.get());
  }
}

TlsSession::~TlsSession() {
  if (ssl_) SSL_free(ssl_);
  OPENSSL_cleanse(stage_.data(), stage_.size());
}

TlsIo TlsSession::handshake() {
  if (failed_) return TlsIo::failed;
  if (established_) return TlsIo::ok;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    finish_handshake();
    return failed_ ? TlsIo::failed : TlsIo::ok;
  }
  return fail_with(r, "handshake").status;
}

void TlsSession::finish_handshake() {
  established_ = true;
  bool reused = SSL_session_reused(ssl_) == 1;
  if (config_->psk()) {
    // An external PSK also counts as "reused". A ticket resumption's session carries the
    // ticket; the external key's session has none. A listener that resumed never looked the
    // external identity up (the ticket comes first in the ClientHello).
    if (!reused) {
      failed_ = true;
      error_ = auth_error("tls " + peer_, "handshake failed: the peer did not use the pre-shared key", "tls-wrong-psk");
      return;
    }
    if (config_->role_ == TlsRole::dialer) resumed_ = offered_ticket_ && SSL_SESSION_has_ticket(SSL_get0_session(ssl_)) == 1;
    else resumed_ = !psk_offered_;  // the listener found no external key: it was a ticket
  } else {
    resumed_ = reused;
  }
  if (config_->role_ == TlsRole::dialer && offered_ticket_ && !resumed_) {
    config_->tickets_.erase(peer_key_);  // refused (listener restarted): do not offer it again
  }
}

std::string TlsSession::peer_identity() const {
  if (config_->psk()) return "psk '" + config_->psk_identity_ + "'";
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return "no certificate";
  return subject_of(cert) + " (" + pin_text(spki_sha256(cert)) + ")";
}

std::string TlsSession::suite() const {
  const SSL_CIPHER* c = established_ ? SSL_get_current_cipher(ssl_) : nullptr;
  return c ? SSL_CIPHER_get_name(c) : "";
}

TlsResult TlsSession::fail_with(int ret, const char* op) {
  int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_WANT_READ) return {TlsIo::want_read, 0};
  if (err == SSL_ERROR_WANT_WRITE) return {TlsIo::want_write, 0};
  if (err == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return {TlsIo::eof, 0};
  }
  error_ = map_error(err, op);
  failed_ = true;
  return {TlsIo::failed, 0};
}

Error TlsSession::map_error(int ssl_error, const char* op) {
  const std::string ctx = "tls " + peer_;
  const bool dialer = config_->role_ == TlsRole::dialer;
  const bool in_handshake = !established_;
  // Our own verdicts first: they are the precise ones.
  if (pin_mismatch_) {
    ERR_clear_error();
    return auth_error(ctx, "peer certificate does not match --pin", "tls-pin-mismatch");
  }
  long vr = SSL_get_verify_result(ssl_);
  X509* peer_cert = SSL_get0_peer_certificate(ssl_);
  std::string who = peer_cert ? " (" + subject_of(peer_cert) + ")" : std::string();
  // The reason codes OpenSSL queued, most specific first.
  int reason = 0;
  std::string reason_text;
  for (unsigned long e; (e = ERR_get_error()) != 0;) {
    if (reason == 0 || ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      reason = ERR_GET_REASON(e);
      const char* t = ERR_reason_error_string(e);
      reason_text = t ? t : "error " + std::to_string(reason);
    }
  }
  ERR_clear_error();
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED || (in_handshake && vr != X509_V_OK && reason == 0)) {
    switch (vr) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        return auth_error(ctx, "certificate expired" + who, "tls-cert-expired");
      case X509_V_ERR_CERT_NOT_YET_VALID:
        return auth_error(ctx, "certificate not yet valid" + who, "tls-cert-expired");
      case X509_V_ERR_HOSTNAME_MISMATCH:
      case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return auth_error(ctx, "peer certificate does not name the host dialed" + who, "tls-wrong-host");
      case X509_V_ERR_APPLICATION_VERIFICATION:
        if (config_->psk()) {
          return auth_error(ctx, "handshake failed: the peer offered a certificate, not our pre-shared key", "tls-wrong-psk");
        }
        break;
      default:
        break;
    }
    return auth_error(ctx, std::string("untrusted certificate") + who + ": " +
                               X509_verify_cert_error_string(vr), "tls-untrusted");
  }
  switch (reason) {
    case SSL_R_BINDER_DOES_NOT_VERIFY:
      return auth_error(ctx, "handshake failed: wrong pre-shared key", "tls-wrong-psk");
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:  // OpenSSL's answer to a binder made with another key
      if (config_->psk() && in_handshake) return auth_error(ctx, "handshake failed: wrong pre-shared key", "tls-wrong-psk");
      return auth_error(ctx, "handshake failed: the peer could not verify our handshake", "tls-refused");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return auth_error(ctx, "the peer refused our certificate: certificate expired", "tls-refused");
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      return auth_error(ctx, "the peer refused our certificate: untrusted certificate (not signed by its --ca)", "tls-refused");
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
      // OpenSSL's alert for a certificate that is not the pinned one or not yet valid alike.
      return auth_error(ctx, "the peer refused our certificate (not the key it pins, or not valid yet by its clock)",
                        "tls-refused");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      return auth_error(ctx, "the peer refused our certificate (it pins or trusts another key)", "tls-refused");
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return auth_error(ctx, "the listener requires a client certificate (--cert and --key)", "tls-refused");
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return auth_error(ctx, "the peer sent no certificate", "tls-refused");
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
      if (config_->psk() && !dialer) {
        if (psk_unknown_identity_ && !psk_offered_) {
          return auth_error(ctx, "handshake failed: unknown pre-shared key identity '" + unknown_identity_ + "'", "tls-wrong-psk");
        }
        return auth_error(ctx, "handshake failed: the peer offered no pre-shared key (no --psk?)", "tls-wrong-psk");
      }
      return auth_error(ctx, "handshake failed: " + reason_text, "tls-refused");
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      if (config_->psk()) return auth_error(ctx, "handshake failed: the listener refused our pre-shared key (wrong identity?)", "tls-wrong-psk");
      return auth_error(ctx, "handshake failed: the peer refused the handshake", "tls-refused");
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      if (in_handshake) {
        return auth_error(ctx, "handshake failed: the peer does not speak TLS 1.3 (started without keys?)", "tls-not-tls");
      }
      break;
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_SSLV3_ALERT_BAD_RECORD_MAC:
      return protocol_error("tls-bad-record", ctx, "a record failed its integrity check (corrupted or altered on the way)", true);
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return make_error(ErrorKind::disconnected, ctx,
                        in_handshake ? "peer closed the connection during the TLS handshake"
                                     : "peer closed the connection without a TLS close_notify");
    default:
      break;
  }
  if (ssl_error == SSL_ERROR_SYSCALL || (reason == 0 && ssl_error != SSL_ERROR_SSL)) {
    if (last_errno_ != 0) return errno_error(ErrorKind::disconnected, ctx + " " + op, last_errno_);
    return make_error(ErrorKind::disconnected, ctx, eof_seen_ ? "peer closed the connection" : "connection failed");
  }
  // Anything else on an authenticated stream is damage to the stream: retry with a new one.
  return protocol_error("tls-" + std::string(op), ctx,
                        reason_text.empty() ? "TLS failure" : reason_text, true);
}

TlsResult TlsSession::read(std::span<std::uint8_t> out) {
  if (failed_) return {TlsIo::failed, 0};
  if (deferred_) {
    error_ = *deferred_;
    deferred_.reset();
    failed_ = true;
    return {TlsIo::failed, 0};
  }
  std::size_t total = 0;
  ERR_clear_error();  // a failure below is then ours alone (once per call: it is not free)
  while (total < out.size()) {
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_, out.data() + total, out.size() - total, &n);
    if (r == 1) {
      total += n;
      peer_spoke_ = true;
      continue;
    }
    TlsResult res = fail_with(r, "read");
    if (total == 0) return res;
    if (res.status == TlsIo::failed) {  // hand over the good bytes first
      deferred_ = error_;
      failed_ = false;
    }
    break;
  }
  return {TlsIo::ok, total};
}

TlsIo TlsSession::await_acceptance() {
  if (failed_) return TlsIo::failed;
  if (peer_accepted()) return TlsIo::ok;
  ERR_clear_error();
  unsigned char b;
  std::size_t n = 0;
  // A peek: a ticket or an alert is taken, data (which only an accepted dialer gets) stays.
  int got = SSL_peek_ex(ssl_, &b, 1, &n);
  if (got == 1) {
    peer_spoke_ = true;
    return TlsIo::ok;
  }
  TlsIo r = fail_with(got, "read").status;
  if (r == TlsIo::want_read && peer_accepted()) return TlsIo::ok;
  return r;
}

bool TlsSession::has_buffered_input() const { return ssl_ && SSL_has_pending(ssl_) == 1; }

TlsResult TlsSession::writev(std::span<const iovec> iov) {
  if (failed_) return {TlsIo::failed, 0};
  std::size_t taken = 0;
  if (pending_ > 0) {
    // OpenSSL sends the record it built last time and does not read the buffer again (moving
    // buffers allowed): any buffer of the same length does.
    ERR_clear_error();
    std::size_t w = 0;
    if (stage_.size() < pending_) stage_.resize(kRecordPlain);
    int r = SSL_write_ex(ssl_, stage_.data(), pending_, &w);
    if (r != 1) {
      TlsResult res = fail_with(r, "write");
      return {res.status, 0};
    }
    pending_ = 0;
  }
  if (stage_.size() < kRecordPlain) stage_.resize(kRecordPlain);
  ERR_clear_error();
  std::size_t vi = 0, voff = 0;
  while (vi < iov.size()) {
    const std::uint8_t* data;
    std::size_t len;
    std::size_t here = iov[vi].iov_len - voff;
    if (here >= kRecordPlain) {
      // A whole record's worth in one piece: encrypt it where it is.
      data = static_cast<const std::uint8_t*>(iov[vi].iov_base) + voff;
      len = kRecordPlain;
      voff += len;
      if (voff == iov[vi].iov_len) {
        ++vi;
        voff = 0;
      }
    } else {
      // Small pieces (control frames, the tail of a segment) share one record.
      len = 0;
      while (len < kRecordPlain && vi < iov.size()) {
        std::size_t k = std::min(iov[vi].iov_len - voff, kRecordPlain - len);
        std::memcpy(stage_.data() + len, static_cast<const std::uint8_t*>(iov[vi].iov_base) + voff, k);
        len += k;
        voff += k;
        if (voff == iov[vi].iov_len) {
          ++vi;
          voff = 0;
        }
      }
      data = stage_.data();
    }
    if (len == 0) continue;
    std::size_t w = 0;
    int r = SSL_write_ex(ssl_, data, len, &w);
    if (r == 1) {
      taken += len;
      continue;
    }
    TlsResult res = fail_with(r, "write");
    if (res.status == TlsIo::failed) return res;
    // The record is built (encrypted) and partly sent: those bytes are ours now.
    pending_ = len;
    return {TlsIo::want_write, taken + len};
  }
  return {TlsIo::ok, taken};
}

ssize_t TlsSession::recv(void* buf, std::size_t n) {
  TlsResult r = read({static_cast<std::uint8_t*>(buf), n});
  switch (r.status) {
    case TlsIo::ok: return static_cast<ssize_t>(r.bytes);
    case TlsIo::eof: return 0;
    case TlsIo::want_read:
    case TlsIo::want_write: errno = EAGAIN; return -1;
    case TlsIo::failed: break;
  }
  errno = EPROTO;
  return -1;
}

ssize_t TlsSession::sendv(const iovec* iov, int n_iov) {
  TlsResult r = writev({iov, static_cast<std::size_t>(n_iov)});
  if (r.status == TlsIo::failed) {
    errno = EPROTO;
    return -1;
  }
  if (r.bytes == 0 && n_iov > 0) {
    errno = EAGAIN;
    return -1;
  }
  return static_cast<ssize_t>(r.bytes);
}

void send_tls_refusal(int fd) {
  static const std::uint8_t kAlert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
  [[maybe_unused]] auto n = ::send(fd, kAlert, sizeof kAlert, MSG_DONTWAIT | MSG_NOSIGNAL);
}

Error listener_needs_keys(const std::string& peer) {
  Error e = make_error(ErrorKind::auth, "peer " + peer,
                       "the listener speaks TLS: it needs keys (--psk, or --cert with --ca/--pin; see dl-security(7))");
  e.final = true;
  return e;
}

TlsIo TlsSession::shutdown() {
  if (failed_) return TlsIo::failed;
  if (closed_notify_sent_) return TlsIo::ok;
  if (pending_ > 0) {
    TlsResult r = flush();
    if (r.status != TlsIo::ok) return r.status;
  }
  ERR_clear_error();
  int r = SSL_shutdown(ssl_);
  if (r >= 0) {
    closed_notify_sent_ = true;
    return TlsIo::ok;
  }
  return fail_with(r, "shutdown").status;
}

}  // namespace dl
