// dtpserve: one UDP socket, any number of sessions, each paced by its own token bucket and
// rate controller; payload bytes go from pread straight into segmentation-offload buffers.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "lib/base/byte_order.h"
#include "lib/base/clock.h"
#include "lib/base/random.h"
#include "lib/base/units.h"
#include "lib/codec/dtp_packet.h"
#include "lib/dtp/dtp.h"
#include "lib/dtp/fault.h"
#include "lib/dtp/pacer.h"
#include "lib/dtp/sha256.h"
#include "lib/net/datagram.h"
#include "lib/net/net.h"

namespace dl {

using namespace dtp;

namespace {

constexpr std::int64_t kMs = 1000000;
constexpr std::int64_t kStallNs = 1500 * kMs;    // no report this long: stop sending, keep state
constexpr std::size_t kMaxPlan = 1u << 17;       // ranges queued per session: 2 MiB, so 64
                                                 // hostile sessions cannot take more than 128 MiB
constexpr double kStartRate = 125e6;             // bytes/s: 1 Gbit/s until reports say more
constexpr double kMinRate = 64e3;
constexpr double kUnlimited = 12.5e9;            // 100 Gbit/s stands for "no cap"
constexpr std::int64_t kSliceNs = 200000;        // aim: one slot of datagrams per 200 us
// A session waiting for its payload's hash whose client stopped asking (dtpget repeats OPEN
// at least every 2 s while it waits) ends after this long, and with it the hash nobody
// wants: OPENs that are never repeated (a flood, forged sources) must not queue hours of
// hashing in front of real clients.
constexpr std::int64_t kHashWaitIdleNs = 5000 * kMs;

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0, ctime_ns = 0;
  auto operator<=>(const FileId&) const = default;
};

FileId file_id(const struct stat& st) {
  return {st.st_dev, st.st_ino, static_cast<std::uint64_t>(st.st_size),
          st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec,
          st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec};
}

// Hashes payloads on a worker thread so a large file never stalls the sessions already
// running; results come back through the reactor's wake-up.
class Hasher {
 public:
  explicit Hasher(Reactor& r) : r_(r), worker_([this] { loop(); }) {}
  ~Hasher() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
      cancel_current_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void submit(FileId id, int fd, std::uint64_t size) {
    {
      std::lock_guard<std::mutex> g(m_);
      jobs_.push_back({id, Fd(::dup(fd)), size});
    }
    cv_.notify_one();
  }
  // Nobody waits for this payload's hash any more: drop its job, or abandon it if under way
  // (its result then comes back as an error of kind cancelled).
  void cancel(const FileId& id) {
    std::lock_guard<std::mutex> g(m_);
    std::erase_if(jobs_, [&](const Job& j) { return j.id == id; });
    if (has_current_ && current_ == id) cancel_current_ = true;
  }
  std::vector<std::pair<FileId, Result<Digest>>> take() {
    std::lock_guard<std::mutex> g(m_);
    return std::exchange(done_, {});
  }

 private:
  struct Job {
    FileId id;
    Fd fd;
    std::uint64_t size;
  };
  void loop() {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      Job j = std::move(jobs_.front());
      jobs_.pop_front();
      current_ = j.id;
      has_current_ = true;
      cancel_current_ = false;
      lk.unlock();
      auto d = sha256_fd(j.fd.get(), j.size, &cancel_current_);
      lk.lock();
      has_current_ = false;
      done_.emplace_back(j.id, std::move(d));
      r_.wake();
    }
  }
  Reactor& r_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<std::pair<FileId, Result<Digest>>> done_;
  FileId current_;
  bool has_current_ = false;
  std::atomic<bool> cancel_current_{false};
  bool stop_ = false;
  std::thread worker_;
};

struct Session {
  std::uint64_t id = 0;
  SocketAddress peer;
  std::string peer_text, name;
  Fd file;
  FileId fid;
  std::uint64_t size = 0;
  Digest sha{};
  std::uint64_t mtime_ns = 0;
  std::uint16_t chunk = 0;
  std::uint64_t cookie = 0;  // sent in META only: a REQUEST echoing it comes from the real peer
  bool ready = false;
  bool proven = false;       // a REQUEST echoed the cookie: the peer receives at its address
  bool unreadable = false;   // the payload shrank or cannot be read: told ERROR io, to end
  // The pass being sent.
  std::uint32_t pass = 0;
  std::bitset<kMaxParts> parts;  // REQUEST parts of this pass already taken
  std::uint64_t parts_seen = 0;   // the first 64 of them, as END reports them
  std::vector<ByteRange> plan;
  std::size_t plan_i = 0;
  std::uint64_t cursor = 0;
  std::uint64_t sent_in_pass = 0;
  bool pass_done = true, end_pending = false;
  std::uint32_t seq = 0;
  // Pacing.
  TokenBucket bucket;
  RateController ctl{kStartRate, kMinRate, kUnlimited, true};
  double client_cap = 0;  // bytes/s, 0: none
  bool have_report = false;
  double min_backlog_s = 1e9;
  std::int64_t rep_at = 0;  // when the last judged report came
  std::int64_t min_backlog_at = 0;
  std::uint32_t rep_seq = 0;
  std::uint64_t rep_recv = 0;
  std::int64_t last_heard = 0, started = 0;
  // For the log line.
  std::uint64_t bytes = 0, datagrams = 0, passes = 0;
};

std::string peer_text(const SocketAddress& a) { return a.to_string(); }

bool same_peer(const SocketAddress& a, const SocketAddress& b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

class Server {
 public:
  Server(const DtpserveOptions& o, ToolContext& ctx)
      : o_(o), ctx_(ctx), rb_(64, 65536), sb_(16), ctl_(kMaxDatagram), swap_(kMaxDatagram) {}
  int run();

 private:
  void say(const std::string& s) {
    if (!o_.verbosity.quiet) ctx_.say(ctx_.program + ": " + s);
  }
  void on_readable();
  void handle(std::span<const std::uint8_t> d, const SocketAddress& from);
  // `asked`: the OPEN's size in bytes; no answer to it is larger.
  void on_open(const Packet& p, const SocketAddress& from, std::size_t asked);
  void on_request(Session& s, const Packet& p);
  void on_report(Session& s, const Packet& p);
  void hashed();
  void make_ready(Session& s);
  void send_ctl(std::size_t n, const SocketAddress& to);
  // `asked`: the size of the datagram this answers, when its source is not proven (an OPEN,
  // a malformed datagram): the ERROR is cut to fit it, so a forged source gains nothing.
  void reply_error(std::uint64_t session, const SocketAddress& to, ErrorCode c, const std::string& text,
                   std::size_t asked = kMaxDatagram);
  void end_session(std::uint64_t id, const char* why);
  bool evict_unproven();
  void drop_unwanted_hash(const FileId& fid);
  void erase_session(std::uint64_t id);
  void pump();
  bool flush_batch();
  std::size_t fill_slot(Session& s, std::size_t max_segs, std::int64_t now);
  void arm_pace(std::int64_t delay_ns);
  void housekeeping();
  Result<Fd> open_payload(const std::string& name, ErrorCode& code, std::string& why);

  const DtpserveOptions& o_;
  ToolContext& ctx_;
  Reactor r_;
  DatagramSocket sock_;
  Fd root_;
  RecvBatch rb_;
  SendBatch sb_;
  std::vector<std::uint8_t> ctl_, swap_;
  std::map<std::uint64_t, std::unique_ptr<Session>> sessions_;
  std::vector<Session*> active_;
  std::map<FileId, Digest> hashes_;
  std::map<FileId, bool> hashing_;
  std::unique_ptr<Hasher> hasher_;
  std::unique_ptr<Timer> house_, pace_;
  Reactor::Id sock_watch_ = 0;
  bool waiting_pollout_ = false, stopping_ = false;
  std::uint64_t rr_ = 0;  // round-robin start among sessions
  Coin coin_;
  TokenBucket error_budget_;
  std::uint64_t malformed_ = 0;
  std::uint64_t evicted_ = 0;  // unproven sessions that made room for new ones
};

Result<Fd> Server::open_payload(const std::string& name, ErrorCode& code, std::string& why) {
  code = ErrorCode::unknown_payload;
  for (const std::string& f : o_.files) {
    std::string base = f.substr(f.rfind('/') == std::string::npos ? 0 : f.rfind('/') + 1);
    if (base == name) {
      Fd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) {
        why = std::string("cannot open: ") + std::strerror(errno);
        code = ErrorCode::io;
        return make_error(ErrorKind::io, name);
      }
      return fd;
    }
  }
  if (!root_.valid()) {
    why = "no such payload";
    return make_error(ErrorKind::io, name);
  }
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  // Beneath the root, symlinks included: ".." past the root, absolute names and links that
  // lead outside all fail with EXDEV; magic /proc links are refused too.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_.get(), name.c_str(), &how, sizeof how);
  if (fd < 0) {
    int err = errno;
    if (err == EXDEV) why = "refused: the name leads outside the served directory";
    else if (err == ENOENT || err == ENOTDIR) why = "no such payload";
    else if (err == ELOOP) why = "refused: too many symbolic links";
    else {
      why = std::string("cannot open: ") + std::strerror(err);
      code = ErrorCode::io;
    }
    return errno_error(ErrorKind::io, name, err);
  }
  Fd f(static_cast<int>(fd));
  int fl = ::fcntl(f.get(), F_GETFL);
  ::fcntl(f.get(), F_SETFL, fl & ~O_NONBLOCK);  // O_NONBLOCK only so a FIFO cannot hang the open
  return f;
}

void Server::send_ctl(std::size_t n, const SocketAddress& to) {
  (void)send_datagram(sock_.fd.get(), {ctl_.data(), n}, &to);
}

void Server::reply_error(std::uint64_t session, const SocketAddress& to, ErrorCode c, const std::string& text,
                         std::size_t asked) {
  // A budget on error replies: forged sources must not turn us into a reflector.
  if (error_budget_.refill(mono_ns()) < 1) return;
  error_budget_.spend(1);
  std::size_t room = asked > kErrorOverhead ? asked - kErrorOverhead : 0;
  std::size_t n = std::min({text.size(), room, kMaxError});
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;  // whole UTF-8 characters
  send_ctl(encode_error(ctl_.data(), session ? session : 1, c, std::string_view(text).substr(0, n)), to);
}

void Server::end_session(std::uint64_t id, const char* why) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  double secs = static_cast<double>(mono_ns() - s.started) * 1e-9;
  say(fmt::format("{} {} session {:016x}: sent {} in {} datagrams over {} ({}), {} pass{}, {}",
                  s.peer_text, s.name, s.id, human_bytes(static_cast<double>(s.bytes)), s.datagrams,
                  human_duration(secs), human_rate(static_cast<double>(s.bytes), std::max(secs, 1e-9)),
                  s.passes, s.passes == 1 ? "" : "es", why));
  erase_session(id);
}

// Forgets a session; a hash it alone was waiting for is dropped with it.
void Server::erase_session(std::uint64_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  FileId fid = it->second->fid;
  bool waited = !it->second->ready;
  sessions_.erase(it);
  if (waited) drop_unwanted_hash(fid);
}

void Server::drop_unwanted_hash(const FileId& fid) {
  if (!hashing_.count(fid)) return;
  for (auto& [id, other] : sessions_) {
    if (!other->ready && other->fid == fid) return;  // still wanted
  }
  hasher_->cancel(fid);
  hashing_.erase(fid);
}

// Full: a session whose peer never echoed its cookie (OPENs from a flood, forged sources, or
// a client still in its handshake) gives way to a new one, the one heard from longest ago
// first. Otherwise anyone able to send 64 OPENs (spoofed, even) kept every real client out
// until the idle timeout, over and over. Sessions that proved themselves are never evicted.
bool Server::evict_unproven() {
  Session* victim = nullptr;
  for (auto& [id, s] : sessions_) {
    if (!s->proven && (!victim || s->last_heard < victim->last_heard)) victim = s.get();
  }
  if (!victim) return false;
  send_ctl(encode_stop(ctl_.data(), victim->id, StopReason::expired), victim->peer);
  ++evicted_;
  erase_session(victim->id);  // no log line: a flood would write one per datagram
  return true;
}

void Server::make_ready(Session& s) {
  s.ready = true;
  send_ctl(encode_meta(ctl_.data(), s.id, s.size, s.sha, s.chunk, s.mtime_ns, s.cookie), s.peer);
}

void Server::on_open(const Packet& p, const SocketAddress& from, std::size_t asked) {
  auto it = sessions_.find(p.session);
  if (it != sessions_.end()) {
    Session& s = *it->second;
    if (!same_peer(s.peer, from)) return;  // someone else's id: ignore
    s.last_heard = mono_ns();  // a client waiting for the hash repeats its OPEN
    if (s.ready) make_ready(s);
    else send_ctl(encode_keepalive(ctl_.data(), s.id, 1), from);
    return;
  }
  std::string name(p.open.name);
  if (sessions_.size() >= o_.max_sessions && !evict_unproven()) {
    reply_error(p.session, from, ErrorCode::busy, fmt::format("busy: {} sessions already", sessions_.size()), asked);
    return;
  }
  ErrorCode code;
  std::string why;
  auto fd = open_payload(name, code, why);
  if (!fd) {
    reply_error(p.session, from, code, why, asked);
    say(fmt::format("{} {}: {}", peer_text(from), name, why));
    return;
  }
  struct stat st;
  if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    reply_error(p.session, from, ErrorCode::unknown_payload, "not a regular file", asked);
    say(fmt::format("{} {}: not a regular file", peer_text(from), name));
    return;
  }
  auto s = std::make_unique<Session>();
  s->id = p.session;
  s->peer = from;
  s->peer_text = peer_text(from);
  s->name = name;
  s->file = std::move(*fd);
  s->fid = file_id(st);
  s->size = s->fid.size;
  s->mtime_ns = static_cast<std::uint64_t>(s->fid.mtime_ns);
  s->chunk = static_cast<std::uint16_t>(std::min<std::size_t>(p.open.chunk, kMaxChunk));
  s->last_heard = s->started = mono_ns();
  s->cookie = secure_random_u64();
  s->ctl = RateController(kStartRate, kMinRate, kUnlimited, !o_.fixed_rate);
  Session& ref = *s;
  sessions_[p.session] = std::move(s);
  if (auto h = hashes_.find(ref.fid); h != hashes_.end()) {
    ref.sha = h->second;
    make_ready(ref);
    return;
  }
  if (!hashing_[ref.fid]) {
    hashing_[ref.fid] = true;
    hasher_->submit(ref.fid, ref.file.get(), ref.size);
  }
  send_ctl(encode_keepalive(ctl_.data(), ref.id, 1), from);
}

void Server::hashed() {
  for (auto& [fid, digest] : hasher_->take()) {
    if (!digest && digest.error().kind == ErrorKind::cancelled) {
      // Dropped for want of takers; one may have come since: start over for it.
      if (hashing_.count(fid)) continue;  // already resubmitted
      for (auto& [id, s] : sessions_) {
        if (!s->ready && s->fid == fid) {
          hashing_[fid] = true;
          hasher_->submit(fid, s->file.get(), s->size);
          break;
        }
      }
      continue;
    }
    hashing_.erase(fid);
    if (digest) {
      if (hashes_.size() >= 1024) hashes_.clear();  // files that keep changing: bound the cache
      hashes_[fid] = *digest;
    }
    std::vector<std::uint64_t> failed;
    for (auto& [id, s] : sessions_) {
      if (s->ready || s->fid != fid) continue;
      if (digest) {
        s->sha = *digest;
        make_ready(*s);
      } else {
        reply_error(id, s->peer, ErrorCode::io, digest.error().message(), kMinOpen);  // its OPEN's size, at least
        failed.push_back(id);
      }
    }
    for (auto id : failed) end_session(id, "ended: cannot read the payload");
  }
}

void Server::on_request(Session& s, const Packet& p) {
  if (!s.ready) return;
  const Request& q = p.request;
  // Only a client that saw META sends data our way: a forged source address never gets
  // a payload reflected at it.
  if (q.cookie != s.cookie) return;
  s.proven = true;
  if (q.pass < s.pass) return;  // stale
  if (q.pass > s.pass) {
    s.pass = q.pass;
    s.parts_seen = 0;
    s.parts.reset();
    s.plan.clear();
    s.plan_i = 0;
    s.cursor = 0;
    s.sent_in_pass = 0;
    s.pass_done = true;
    s.end_pending = false;
    ++s.passes;
  }
  if (s.parts.test(q.part)) return;  // a duplicate part
  s.client_cap = static_cast<double>(q.rate_bits) / 8;
  // Ranges already sent count no more: drop them (when they are half the plan, or it nears
  // its cap: amortised, and the cap still bounds memory), so that kMaxPlan bounds what is
  // still to send. Kept, they filled the plan after ~130k repairs (at 10% loss, 85% into a
  // 2 GiB pass) and every later repair was refused until the next pass.
  if (s.plan_i > 0 && (2 * s.plan_i >= s.plan.size() || s.plan.size() + 4096 >= kMaxPlan)) {
    s.plan.erase(s.plan.begin(), s.plan.begin() + static_cast<std::ptrdiff_t>(s.plan_i));
    s.plan_i = 0;
  }
  // Every range must lie within the payload; a bad one refuses the whole part.
  RangeReader rr(q);
  ByteRange r;
  std::vector<ByteRange> got;
  while (rr.next(r)) {
    if (r.end > s.size) {
      reply_error(s.id, s.peer, ErrorCode::bad_request,
                  fmt::format("range {}-{} beyond the payload's end {}", r.start, r.end, s.size));
      return;
    }
    if (s.plan.size() + got.size() >= kMaxPlan) break;  // the rest waits for the next pass
    got.push_back(r);
  }
  if (q.urgent && s.plan_i < s.plan.size()) {
    // Repairs go before the rest of the pass: split the range being sent at the cursor.
    ByteRange& cur = s.plan[s.plan_i];
    if (s.cursor > cur.start && s.cursor < cur.end) cur.start = s.cursor;
    s.plan.insert(s.plan.begin() + static_cast<std::ptrdiff_t>(s.plan_i), got.begin(), got.end());
    s.cursor = 0;
  } else {
    s.plan.insert(s.plan.end(), got.begin(), got.end());
  }
  s.parts.set(q.part);
  if (q.part < 64) s.parts_seen |= 1ull << q.part;
  if (s.plan_i < s.plan.size()) s.pass_done = false;
  if (!s.pass_done) arm_pace(0);
}

void Server::on_report(Session& s, const Packet& p) {
  const Report& rep = p.report;
  if (s.have_report) {
    std::uint32_t sent = rep.highest_seq - s.rep_seq;
    std::uint64_t got = rep.received - s.rep_recv;
    // Judge intervals with enough datagrams to mean something; older reports (reordered)
    // and empty ones just wait.
    if (sent >= 32 && sent < (1u << 31) && rep.received >= s.rep_recv) {
      // Datagrams numbered but not yet seen by the client, in seconds at the current rate;
      // what exceeds the least backlog of the last two seconds (the path's own delay) is a
      // queue at the receiver.
      std::int64_t now = mono_ns();
      double per_s = std::max(1.0, s.ctl.rate() / static_cast<double>(kDataHeaderSize + s.chunk));
      double backlog_s = static_cast<double>(static_cast<std::uint32_t>(s.seq - rep.highest_seq)) / per_s;
      if (now - s.min_backlog_at > 2000 * kMs || backlog_s < s.min_backlog_s) {
        s.min_backlog_s = backlog_s;
        s.min_backlog_at = now;
      }
      double dt = static_cast<double>(now - s.rep_at) * 1e-9;
      double delivered = s.rep_at > 0 && dt > 0.005 ? static_cast<double>(got) * static_cast<double>(kDataHeaderSize + s.chunk) / dt : 0;
      s.rep_at = now;
      s.ctl.on_interval(sent, got, backlog_s - s.min_backlog_s, delivered);
      s.rep_seq = rep.highest_seq;
      s.rep_recv = rep.received;
    }
  } else if (rep.received > 0) {
    s.have_report = true;
    s.rep_seq = rep.highest_seq;
    s.rep_recv = rep.received;
    s.rep_at = mono_ns();
  }
  if (rep.pass == s.pass && s.pass_done && s.pass > 0) {
    send_ctl(encode_end(ctl_.data(), s.id, s.pass, s.sent_in_pass, s.parts_seen), s.peer);
  }
}

void Server::handle(std::span<const std::uint8_t> d, const SocketAddress& from) {
  Packet p;
  const char* bad = decode(d, p);
  if (*bad) {
    ++malformed_;
    std::string id = bad;
    // Garbage that is not even DTP gets no answer; a DTP datagram with a bad field is told.
    if (id != "short" && id != "bad-magic" && id != "bad-checksum" && id != "bad-session" &&
        (p.type == Type::open || p.type == Type::request || id == "bad-version" || id == "bad-type")) {
      std::uint64_t sid = d.size() >= kHeaderSize ? get_u64(d.data() + 8) : 0;
      reply_error(sid, from, ErrorCode::bad_request, "bad request: " + id, d.size());
    }
    return;
  }
  if (p.type == Type::open) {
    on_open(p, from, d.size());
    return;
  }
  auto it = sessions_.find(p.session);
  if (it == sessions_.end() || !same_peer(it->second->peer, from)) {
    // A client whose session we do not know (we restarted, or it expired) learns so, and
    // may open again.
    if (p.type == Type::request || p.type == Type::report) {
      if (error_budget_.refill(mono_ns()) >= 1) {
        error_budget_.spend(1);
        send_ctl(encode_stop(ctl_.data(), p.session, StopReason::expired), from);
      }
    }
    return;
  }
  Session& s = *it->second;
  s.last_heard = mono_ns();
  switch (p.type) {
    case Type::request: on_request(s, p); break;
    case Type::report: on_report(s, p); break;
    case Type::stop: end_session(s.id, p.stop.reason == StopReason::done ? "ended: done" : "ended: stopped by the client"); break;
    default: break;  // keepalive: heard; server-to-client types: ignored
  }
}

void Server::on_readable() {
  for (int round = 0; round < 4; ++round) {
    auto n = rb_.receive(sock_.fd.get());
    if (!n || *n == 0) return;
    for (std::size_t i = 0; i < *n; ++i) {
      if (rb_.truncated(i)) {
        ++malformed_;
        continue;
      }
      handle(rb_.message(i), rb_.from(i));
    }
    if (*n < rb_.capacity()) return;
  }
}

void Server::arm_pace(std::int64_t delay_ns) {
  if (waiting_pollout_) return;
  // The reactor's timers have nanosecond deadlines (epoll_pwait2), so a session at 4 Gbit/s
  // wakes every ~130 us for one offload buffer instead of bursting a millisecond's worth.
  Clock::time_point when = Clock::now() + std::chrono::nanoseconds(delay_ns);
  if (pace_->armed() && pace_->deadline() <= when) return;  // an earlier wake-up is due anyway
  pace_->arm(when);
}

std::size_t Server::fill_slot(Session& s, std::size_t max_segs, std::int64_t now) {
  (void)now;
  const std::size_t seg = kDataHeaderSize + s.chunk;
  std::uint8_t* slot = sb_.next_slot();
  struct Entry {
    std::uint64_t off;
    std::size_t n;
    std::uint32_t seq;
  };
  Entry e[SendBatch::kMaxSegments];
  std::size_t k = 0;
  while (k < max_segs && s.plan_i < s.plan.size()) {
    const ByteRange& r = s.plan[s.plan_i];
    if (s.cursor < r.start || s.cursor >= r.end) s.cursor = r.start;  // a new range begins
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(s.chunk, r.end - s.cursor));
    std::uint64_t off = s.cursor;
    s.cursor += n;
    if (s.cursor >= r.end) ++s.plan_i;
    std::uint32_t seq = s.seq++;
    ++s.sent_in_pass;
    if (coin_.flip(o_.faults.drop)) continue;  // --drop: as if the network lost it
    e[k++] = {off, n, seq};
    if (n < s.chunk) break;  // a short datagram must be the slot's last
  }
  if (s.plan_i >= s.plan.size()) {
    s.pass_done = true;
    s.end_pending = true;
  }
  if (k == 0) return 0;
  // Read file-contiguous runs with one preadv each, straight behind each datagram's header.
  struct iovec iov[SendBatch::kMaxSegments];
  for (std::size_t a = 0; a < k;) {
    std::size_t b = a;
    std::size_t total = 0;
    while (b < k && (b == a || e[b].off == e[b - 1].off + e[b - 1].n)) {
      iov[b - a] = {slot + b * seg + kDataHeaderSize, e[b].n};
      total += e[b].n;
      ++b;
    }
    ssize_t got;
    do {
      got = ::preadv(s.file.get(), iov, static_cast<int>(b - a), static_cast<off_t>(e[a].off));
    } while (got < 0 && errno == EINTR);
    if (got != static_cast<ssize_t>(total)) {
      reply_error(s.id, s.peer, ErrorCode::io, "the payload changed or cannot be read");
      s.plan.clear();
      s.plan_i = 0;
      s.pass_done = true;
      s.end_pending = false;
      s.ready = false;
      s.unreadable = true;  // pump() ends it: nothing more can come of it
      return 0;
    }
    a = b;
  }
  if (o_.faults.reorder && k > 2) {
    // Shuffle the full-size datagrams; a short last one stays last (segmentation rule).
    std::size_t full = e[k - 1].n < s.chunk ? k - 1 : k;
    for (std::size_t i = full; i > 1; --i) {
      std::size_t j = coin_.below(i);
      if (j == i - 1) continue;
      std::memcpy(swap_.data(), slot + (i - 1) * seg, seg);
      std::memcpy(slot + (i - 1) * seg, slot + j * seg, seg);
      std::memcpy(slot + j * seg, swap_.data(), seg);
      std::swap(e[i - 1], e[j]);
    }
  }
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < k; ++i) {
    encode_data_header(slot + i * seg, s.id, e[i].off, e[i].seq, s.pass, e[i].n);
    bytes += e[i].n;
  }
  std::size_t len = (k - 1) * seg + kDataHeaderSize + e[k - 1].n;
  sb_.commit(len, seg, &s.peer);
  s.bytes += bytes;
  s.datagrams += k;
  return len;
}

// Sends what the batch holds; false when the socket is full (then POLLOUT resumes the pump).
bool Server::flush_batch() {
  if (sb_.empty()) return true;
  (void)sb_.flush(sock_);
  if (sb_.empty()) return true;
  waiting_pollout_ = true;
  r_.set_events(sock_watch_, POLLIN | POLLOUT);
  return false;
}

void Server::pump() {
  std::int64_t now = mono_ns();
  if (!flush_batch()) return;
  std::vector<Session*>& active = active_;  // reused: no allocation per wake-up
  active.clear();
  for (auto& [id, s] : sessions_) {
    if (s->ready && !s->pass_done && now - s->last_heard < kStallNs) active.push_back(s.get());
  }
  std::int64_t next = -1;
  if (!active.empty()) {
    double share = o_.rate_bits > 0 ? o_.rate_bits / 8 / static_cast<double>(active.size()) : kUnlimited;
    std::size_t start = rr_++ % active.size();
    for (std::size_t j = 0; j < active.size(); ++j) {
      Session& s = *active[(start + j) % active.size()];
      double cap = s.client_cap > 0 ? std::min(share, s.client_cap) : share;
      s.ctl.set_max(cap);
      double rate = s.ctl.rate();
      std::size_t seg = kDataHeaderSize + s.chunk;
      std::size_t per_slot = std::min<std::size_t>(SendBatch::kMaxSegments, 65000 / seg);
      std::size_t segs = std::clamp<std::size_t>(
          static_cast<std::size_t>(rate * kSliceNs * 1e-9 / static_cast<double>(seg)), 1, per_slot);
      double unit = static_cast<double>(segs * seg);
      // Tokens pile up for at most 4 ms: enough to make up for a wake-up the scheduler delays
      // on a busy machine, too little for a burst that would overflow a receiver.
      s.bucket.configure(rate, std::max(2 * unit, rate * 4e-3));
      double tokens = s.bucket.refill(now);
      // Each session gets at most a fair share of this round's slots.
      std::size_t quota = std::max<std::size_t>(1, sb_.free_slots() / (active.size() - j));
      while (quota > 0 && sb_.free_slots() > 0 && !s.pass_done && s.ready) {
        if (tokens < unit) break;
        std::size_t len = fill_slot(s, segs, now);
        s.bucket.spend(static_cast<double>(len));
        tokens -= static_cast<double>(len);
        --quota;
      }
      if (!s.pass_done) {
        std::int64_t w = s.bucket.wait_ns(unit);
        next = next < 0 ? w : std::min(next, w);
      }
    }
  }
  // A session whose payload cannot be read any more ends now (it was told ERROR io), not
  // after the idle timeout with its file held open. The batch holds copies of addresses.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = *(it++)->second;  // end_session() erases its node; `it` moved on already
    if (s.unreadable) end_session(s.id, "ended: the payload changed or cannot be read");
  }
  if (!flush_batch()) return;
  // END only after the pass's last data left, so it does not overtake them.
  for (auto& [id, s] : sessions_) {
    if (s->end_pending) {
      s->end_pending = false;
      send_ctl(encode_end(ctl_.data(), s->id, s->pass, s->sent_in_pass, s->parts_seen), s->peer);
    }
  }
  if (next >= 0) arm_pace(next);
}

void Server::housekeeping() {
  std::int64_t now = mono_ns();
  std::vector<std::uint64_t> expired;
  bool stalled_resume = false;
  for (auto& [id, s] : sessions_) {
    if (o_.idle_timeout_s < 9e9 && now - s->last_heard > static_cast<std::int64_t>(o_.idle_timeout_s * 1e9)) expired.push_back(id);
    else if (!s->ready && now - s->last_heard > kHashWaitIdleNs) expired.push_back(id);
    else if (s->ready && !s->pass_done) stalled_resume = true;
  }
  for (auto id : expired) {
    if (auto it = sessions_.find(id); it != sessions_.end()) {
      send_ctl(encode_stop(ctl_.data(), id, StopReason::expired), it->second->peer);
    }
    end_session(id, "ended: client silent");
  }
  if (stalled_resume) arm_pace(0);  // a stalled session may have been heard from again
}

int Server::run() {
  auto ep = parse_listen_endpoint(o_.listen);
  if (!ep) {
    ctx_.say(ctx_.program + ": " + ep.error().message());
    return exit_code(ErrorKind::usage);
  }
  if (!o_.root.empty()) {
    root_.reset(::open(o_.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root_.valid()) {
      ctx_.say(ctx_.program + ": " + errno_error(ErrorKind::io, "--root " + o_.root, errno).message());
      return exit_code(ErrorKind::io);
    }
  }
  for (const auto& f : o_.files) {
    if (::access(f.c_str(), R_OK) != 0) {
      ctx_.say(ctx_.program + ": " + errno_error(ErrorKind::io, f, errno).message());
      return exit_code(ErrorKind::io);
    }
  }
  auto sock = bind_datagram(*ep, o_.buffer_bytes);
  if (!sock) {
    ctx_.say(ctx_.program + ": " + sock.error().message());
    return exit_code(sock.error().kind);
  }
  sock_ = std::move(*sock);
  std::uint16_t port = port_of(sock_.local);
  if (!o_.port_file.empty()) {
    if (auto st = write_port_file(o_.port_file, port); !st) {
      ctx_.say(ctx_.program + ": " + st.error().message());
      return exit_code(st.error().kind);
    }
  } else if (ep->port == 0) {
    ctx_.say(ctx_.program + ": listening on " + sock_.local.to_string());
  }
  if (o_.verbosity.verbose) {
    ctx_.say(fmt::format("{}: listening on {} (segmentation offload {})", ctx_.program,
                         sock_.local.to_string(), sock_.gso ? "on" : "off"));
  }
  error_budget_.configure(200, 50);
  // The watcher first: it blocks the signals in this thread, and the hasher's thread inherits
  // that mask. Started before, that thread took SIGTERM's default action and killed the
  // server without telling its clients (STOP shutdown) or logging their sessions.
  SignalWatcher sig(r_, [this](int signo) {
    if (signo == SIGUSR1) {
      ctx_.say(fmt::format("{}: {} sessions, {} malformed datagrams ignored, {} unanswered sessions evicted",
                           ctx_.program, sessions_.size(), malformed_, evicted_));
      return;
    }
    stopping_ = true;
  });
  hasher_ = std::make_unique<Hasher>(r_);
  r_.on_wake([this] { hashed(); });
  sock_watch_ = r_.watch(sock_.fd.get(), POLLIN, [this](short ev) {
    if (ev & POLLOUT) {
      waiting_pollout_ = false;
      r_.set_events(sock_watch_, POLLIN);
      pump();
    }
    if (ev & (POLLIN | POLLERR)) on_readable();
  });
  pace_ = std::make_unique<Timer>(r_, [this] { pump(); });
  r_.set_timer_slack(std::chrono::microseconds(1));  // pacing wakes every ~100-200 us
  house_ = std::make_unique<Timer>(r_, [this] {
    housekeeping();
    house_->arm(Clock::now() + std::chrono::milliseconds(250));
  });
  house_->arm(Clock::now() + std::chrono::milliseconds(250));
  while (!stopping_) r_.run_once();
  std::vector<std::uint64_t> ids;
  for (auto& [id, s] : sessions_) ids.push_back(id);
  for (auto id : ids) {
    send_ctl(encode_stop(ctl_.data(), id, StopReason::shutdown), sessions_[id]->peer);
    end_session(id, "ended: server shutting down");
  }
  house_.reset();
  pace_.reset();
  hasher_.reset();
  // Only a signal ends the server: the family's "interrupted" (as dlbridge and dlping -l).
  return exit_code(ErrorKind::cancelled);
}

}  // namespace

int run_dtpserve(const DtpserveOptions& o, ToolContext& ctx) {
  Server s(o, ctx);
  return s.run();
}

}  // namespace dl
