// SessionListener: the listening side's front door. It owns the Acceptor (--allow), the TLS
// handshakes of newcomers (a TlsGate, tls_gate.h), and admission up to the point where a session must decide: it reads a
// newcomer's first bytes, detects its protocol by the first byte (0xD7 native, 0x20 classic, see
// detect.h), decodes a native HELLO, drops whoever stays silent or does not complete a handshake
// within handshake_ms, and then hands the connection (socket, TLS state, protocol, HELLO, bytes
// already read) to a Link:
//   - a native HELLO that names a session an attached Link serves goes to that Link, which
//     resumes it or refuses the newcomer alone (a replayed or stale HELLO never touches the live
//     session: Session::admit decides);
//   - anything else goes to the NewSession callback, which names the Link to take it or refuses
//     it. One session (what `Link` with `listen` builds for itself): always the one Link, which
//     adopts a new session only when it has none live. Several sessions (multi_session): the
//     callback makes a new Link per session and starts it with Link::start(listener); a HELLO
//     for an unknown session must then start a fresh one (Session::admit_new), or it is refused.
// Refused newcomers are reported as LinkEvent::rejected to the observer and, if they speak
// native, told why with an ERROR frame; the listener and every session go on.
//
// What it is not: a session. It holds no messages and no sequence numbers; once handed over, a
// connection is the Link's. Sessions are found by a linear scan of the attached links (a handful
// per listener, not thousands). All calls are non-blocking (start() may block on a name lookup)
// and come from the reactor's thread; callbacks may destroy the listener.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/codec/frame.h"
#include "lib/link/detect.h"
#include "lib/net/acceptor.h"
#include "lib/net/allow_list.h"
#include "lib/net/endpoint.h"
#include "lib/net/net.h"
#include "lib/net/reactor.h"
#include "lib/net/tls.h"
#include "lib/net/tls_gate.h"

namespace dl {

class Link;
struct LinkObserver;
struct LinkOptions;

struct ListenerOptions {
  Endpoint endpoint;
  Proto proto = Proto::automatic;  // classic: no detection, a connection is handed over at once
  std::uint32_t max_message = 16u << 20;
  AllowList allow;                 // peers outside it are reset before a byte is read
  int handshake_ms = 5000;         // TLS and protocol handshake, each
  TlsFlags tls;                    // keys: TLS 1.3 below the protocol (none: plain TCP)
  bool multi_session = false;      // several sessions; see the header comment
  std::uint64_t incarnation = 0;   // 0: draw one
};
// The listener half of a LinkOptions (endpoint, proto, allow, handshake, TLS, max_message).
ListenerOptions listener_options(const LinkOptions& link);

// One admitted connection on its way to a Link. Declared fd first, so the TLS session that
// uses the socket goes first.
struct Newcomer {
  Fd fd;
  SocketAddress peer;
  std::unique_ptr<TlsSession> tls;   // with keys: established
  Proto proto = Proto::native;       // detected (or the listener's, with --proto classic)
  std::optional<frame::Hello> hello;  // native: the decoded HELLO
  std::vector<std::uint8_t> early;   // every byte read so far (native: exactly the HELLO frame)
  Clock::time_point opened{};        // when its protocol handshake began (after TLS)
};

// Best effort, never blocks: an ERROR frame telling a native peer why it is refused (with TLS,
// inside it, then close_notify). Nothing for classic peers, which could not read it.
void send_refusal(int fd, TlsSession* tls, Proto proto, const Error& why);

class SessionListener {
 public:
  // Where a newcomer goes that no attached Link serves (see above): the Link to offer it to,
  // or null with *why set to refuse it alone. May create, start and attach a Link.
  using NewSession = std::function<Link*(const Newcomer& newcomer, Error* why)>;

  // `observer` (may be null) hears rejected (detail: the peer) and warning (the acceptor paused
  // when out of descriptors: once until it accepts again); nothing else. Not owned; must outlive the listener.
  SessionListener(Reactor& reactor, ListenerOptions options, LinkObserver* observer, NewSession new_session);
  // Detaches the links; they keep their connections but get no new ones.
  ~SessionListener();
  SessionListener(const SessionListener&) = delete;
  SessionListener& operator=(const SessionListener&) = delete;

  // Loads the keys and binds. Blocks while resolving a host name. Errors: those of TlsConfig and
  // listen_on (usage, resolve, connect).
  Status start();
  const SocketAddress& local() const { return local_; }
  // Shared by every session served here: a dialer that resumes with another one knows the
  // listener restarted.
  std::uint64_t incarnation() const { return incarnation_; }

  // Links call these (Link::start, Link::close); a link is not owned.
  void attach(Link& link);
  void detach(Link& link);
  std::size_t sessions() const { return links_.size(); }
  std::size_t handshakes() const { return candidates_.size() + (gate_ ? gate_->pending() : 0); }

 private:
  struct Pending {
    Newcomer n;
    Reactor::Id watch = 0;
  };
  using PendingList = std::vector<std::unique_ptr<Pending>>;

  void on_accepted(Accepted a);
  void on_accept_event(const Error& e, const SocketAddress* peer);
  void on_secured(std::unique_ptr<TlsSocket> socket, const SocketAddress& peer);
  void begin_detection(std::unique_ptr<Pending> p);
  void on_candidate_io(Pending* p);
  void read_candidate(Pending* p);
  std::unique_ptr<Pending> take(PendingList& list, Pending* p);
  static Pending* evictee(const PendingList& list);
  void refuse(std::unique_ptr<Pending> p, const Error& why, bool tell);
  void hand_over(std::unique_ptr<Pending> p);
  void reschedule();
  void on_timer();

  Reactor& reactor_;
  ListenerOptions opt_;
  LinkObserver* obs_;
  NewSession new_session_;
  std::unique_ptr<Acceptor> acceptor_;
  std::unique_ptr<TlsGate> gate_;  // with keys: newcomers' TLS handshakes, before detection
  SocketAddress local_;
  std::uint64_t incarnation_ = 0;
  PendingList candidates_;   // in their protocol handshake
  std::vector<Link*> links_;
  Timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace dl
