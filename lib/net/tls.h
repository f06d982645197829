// tls: TLS 1.3 (OpenSSL 3) over one connected, non-blocking socket, for links that carry keys.
//
// A TlsConfig is the checked, loaded key material of one side (a pre-shared key, or a
// certificate with a CA and/or a pinned peer key) plus the OpenSSL context built from it; it is
// shared by every connection of a link and keeps the dialer's session tickets, so that a
// reconnect resumes (one round trip, no certificate work). A TlsSession is one connection's
// TLS state: a handshake stepped by the reactor, then reads and writes that return
// "would block" instead of blocking. Neither owns the socket, prints, or knows about frames:
// the link above decides what a failure means for its session.
//
// Errors are dl::Error: ErrorKind::auth for anything about identity ("handshake failed: wrong
// pre-shared key", "peer certificate does not match --pin", "certificate expired", "untrusted
// certificate") and marked final (a reconnect with the same keys cannot help); a record that
// fails its integrity check is a retryable protocol error (corruption on the path heals with a
// new connection); a dropped socket is a retryable disconnect.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lib/base/error.h"
#include "lib/net/tls_keys.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace dl {

struct TlsCallbacks;

// The key flags as the user gave them (file names, the pin text). Empty: not given.
struct TlsFlags {
  std::string psk_file;   // --psk
  std::string cert_file;  // --cert
  std::string key_file;   // --key
  std::string ca_file;    // --ca
  std::string pin;        // --pin: SHA-256 of the peer's SubjectPublicKeyInfo, hex or base64
  std::string gen_psk_file;  // --gen-psk: like --psk, creating the file with a new key if missing
  bool any() const {
    return !psk_file.empty() || !cert_file.empty() || !key_file.empty() || !ca_file.empty() ||
           !pin.empty() || !gen_psk_file.empty();
  }
};

enum class TlsRole { dialer, listener };

// What a listener with keys sends a dialer without keys before closing: a fatal TLS alert
// (protocol_version). Our plain dialers see it where the peer's first bytes should be
// (is_tls_alert) and give up with listener_needs_keys() (auth, final). Best effort, never blocks.
void send_tls_refusal(int fd);
inline bool is_tls_alert(std::span<const std::uint8_t> first_bytes) {
  return !first_bytes.empty() && first_bytes[0] == 0x15;
}
Error listener_needs_keys(const std::string& peer);

// Pre-shared key files: one line `[IDENTITY ]KEY`, KEY 16 to 48 bytes as hex or base64,
// IDENTITY (default "datalink") printable without spaces; blank lines and lines starting with
// '#' are ignored. Both sides need the same file. generate_psk_file() writes a new 256-bit key
// from the kernel's random source, mode 0600, and refuses to replace an existing file (--gen-psk
// only calls it for a missing file). Blocks (disk I/O). Errors: usage (the file exists), io.
Status generate_psk_file(const std::string& path);

// "sha256:<base64>" of a certificate file's public key: what the peer passes to --pin.
// Errors: auth (unreadable or not a certificate).
Result<std::string> certificate_pin(const std::string& cert_file);

class TlsConfig {
 public:
  // The checks of load() that read no file, for flag parsing. Errors: usage.
  static Status check(const TlsFlags& flags, TlsRole role);
  // Checks the combination for `role`, creates the --gen-psk file if it is missing, then reads
  // and checks every file. Blocks (file I/O).
  // Errors: usage for combinations that cannot work or are insecure (--psk with certificates,
  // --key without --cert, a dialer with --cert but nothing to verify the listener with, a
  // listener with --cert but nothing to verify dialers with, a malformed --pin); auth for key
  // material: unreadable or malformed files, a key or PSK file that group or others may read,
  // a certificate that does not match its key or has expired.
  static Result<std::shared_ptr<TlsConfig>> load(const TlsFlags& flags, TlsRole role);
  ~TlsConfig();
  TlsConfig(const TlsConfig&) = delete;
  TlsConfig& operator=(const TlsConfig&) = delete;

  TlsRole role() const { return role_; }
  bool psk() const { return !psk_key_.empty(); }
  // One phrase for logs: "pre-shared key 'datalink'", "certificate, peers verified by --ca".
  std::string describe() const;
  // Our own certificate's pin ("sha256:..."), empty in PSK mode.
  const std::string& own_pin() const { return own_pin_; }
  // Forgets the dialer's session tickets (the next handshake is a full one).
  void forget_tickets() { tickets_.clear(); }

 private:
  friend class TlsSession;
  friend struct TlsCallbacks;
  TlsConfig() = default;
  Status build(const TlsFlags& flags);
  std::shared_ptr<SSL_SESSION> ticket_for(const std::string& peer) const;

  TlsRole role_ = TlsRole::dialer;
  SSL_CTX* ctx_ = nullptr;
  std::vector<std::uint8_t> psk_key_;
  std::string psk_identity_;
  std::vector<std::uint8_t> pin_;  // 32 bytes when pinning
  bool have_ca_ = false;
  bool have_cert_ = false;
  std::string own_pin_;
  // Dialer: the newest ticket per peer name, kept across connections (resumption).
  std::map<std::string, std::shared_ptr<SSL_SESSION>> tickets_;
};

// Results of the non-blocking calls. `bytes` counts plaintext taken (write) or given (read).
enum class TlsIo { ok, want_read, want_write, eof, failed };
struct TlsResult {
  TlsIo status = TlsIo::ok;
  std::size_t bytes = 0;
};

class TlsSession {
 public:
  // `fd`: a connected non-blocking stream socket, owned by the caller and outliving the
  // session. `peer` names the peer in messages; for a dialer with --ca, `verify_host` (a
  // host name or IP address) must appear in the listener's certificate; empty: no name check
  // (unix sockets, pinning, PSK).
  TlsSession(std::shared_ptr<TlsConfig> config, int fd, std::string peer,
             std::string verify_host = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // One non-blocking step of the handshake: ok when done; want_read/want_write: call again
  // when the socket is readable/writable; failed: see error(). A TCP-level failure before the
  // handshake ends is a retryable disconnect.
  TlsIo handshake();
  bool established() const { return established_; }
  // After the handshake: resumed from a session ticket (no full handshake).
  bool resumed() const { return resumed_; }
  // A dialer's proof that the listener accepted it: TLS 1.3 lets a dialer finish before the
  // listener has checked its certificate, so only a later record (a session ticket, data)
  // says it passed. Always true for a listener once established.
  bool peer_accepted() const { return established_ && (peer_spoke_ || config_->role() == TlsRole::listener); }
  // For a dialer that must know before it goes on: processes what the listener sent (its
  // session ticket, or the alert refusing us) without taking application data. ok: accepted;
  // want_read: nothing yet, call again when readable; failed: refused or broken, see error().
  TlsIo await_acceptance();
  // Who the peer proved to be: "psk 'datalink'", "CN=robot-7 (sha256:...)".
  std::string peer_identity() const;
  // The cipher suite negotiated, e.g. "TLS_AES_128_GCM_SHA256" (our first choice: the fastest
  // with AES-NI); empty before the handshake.
  std::string suite() const;

  // Reads decrypted bytes into `out` until it is full or the socket has nothing more (one call
  // may consume several records). ok with bytes > 0; want_read (nothing now); eof (the peer's
  // close_notify); failed (error()). Bytes already decrypted are returned before an error,
  // which the next call reports.
  TlsResult read(std::span<std::uint8_t> out);
  // True when decrypted or received bytes wait inside TLS: poll() will not announce them, so
  // a reader that stopped before want_read must call read() again without waiting.
  bool has_buffered_input() const;

  // Encrypts and sends up to all of `iov`, in records of up to 16 KiB. `bytes` counts what was
  // taken: those bytes are the session's responsibility now (like the kernel's socket buffer).
  // want_write (with bytes possibly > 0): a record is waiting for the socket to drain; call
  // write or flush again when writable. A caller with nothing new to say calls flush().
  TlsResult writev(std::span<const iovec> iov);
  TlsResult write(std::span<const std::uint8_t> data) {
    iovec v{const_cast<std::uint8_t*>(data.data()), data.size()};
    return writev({&v, 1});
  }
  TlsResult flush() { return writev({}); }
  bool has_pending_output() const { return pending_ > 0; }

  // read() and writev() with socket manners, for code written against recv(2)/sendmsg(2):
  // >0 bytes, 0 at the peer's close_notify, -1 with errno EAGAIN (wait for the socket; a
  // sendv that took bytes returns them even when a record still waits, see writev) or EPROTO
  // (failed: error() says why).
  ssize_t recv(void* buf, std::size_t n);
  ssize_t sendv(const iovec* iov, int n_iov);

  // Sends close_notify once (after pending output): ok when sent, want_write to call again.
  // The socket's own shutdown(SHUT_WR) remains the caller's.
  TlsIo shutdown();

  const Error& error() const { return error_; }
  std::uint64_t wire_bytes_in() const { return wire_in_; }
  std::uint64_t wire_bytes_out() const { return wire_out_; }

  // For the socket BIO callbacks; not for callers.
  struct Io;

 private:
  friend struct TlsCallbacks;
  TlsResult fail_with(int ssl_ret, const char* op);
  Error map_error(int ssl_error, const char* op);
  void finish_handshake();

  std::shared_ptr<TlsConfig> config_;
  SSL* ssl_ = nullptr;
  int fd_;
  std::string peer_;
  std::string peer_key_;  // tickets are kept per peer
  bool established_ = false, resumed_ = false, failed_ = false, closed_notify_sent_ = false;
  bool eof_seen_ = false;
  bool peer_spoke_ = false;
  int last_errno_ = 0;
  std::shared_ptr<SSL_SESSION> offered_ticket_;
  std::optional<Error> deferred_;
  Error error_;
  std::vector<std::uint8_t> stage_;  // small pieces gathered into one record
  std::size_t pending_ = 0;          // plaintext bytes of a record built but not yet sent
  std::uint64_t wire_in_ = 0, wire_out_ = 0;

 public:
  // Set by the verification and PSK callbacks, read when mapping a failure.
  bool pin_mismatch_ = false;
  bool psk_unknown_identity_ = false;
  bool psk_offered_ = false;
  std::string unknown_identity_;
};

}  // namespace dl
