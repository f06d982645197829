// dtpget: OPEN, then passes of REQUEST -> DATA... -> END until nothing is missing; every chunk
// is written at its offset as it arrives (coalesced into pwritev runs), the session file is
// rewritten atomically every --save-interval, and the in-order prefix is hashed (and, with
// -o -, streamed) as the holes before it fill.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fmt/format.h>
#include <memory>

#include "lib/base/clock.h"
#include "lib/base/units.h"
#include "lib/codec/dtp_packet.h"
#include "lib/dtp/dtp.h"
#include "lib/dtp/fault.h"
#include "lib/dtp/prefix_hasher.h"
#include "lib/dtp/session.h"
#include "lib/dtp/sha256.h"
#include "lib/net/datagram.h"

namespace dl {

using namespace dtp;

namespace {

constexpr std::int64_t kMs = 1000000;
constexpr auto kTick = std::chrono::milliseconds(20);   // REPORT and housekeeping period
constexpr std::int64_t kIdleNs = 400 * kMs;              // a pass with no data this long is over
constexpr int kRecvBuffers = 8;  // receive buffers lent to the hasher in turn (GRO: 1 MiB each)

// Seconds to nanoseconds, saturating: --timeout inf must not overflow.
std::int64_t to_ns(double s) { return s >= 9e9 ? INT64_MAX / 2 : static_cast<std::int64_t>(s * 1e9); }

std::string base_name(const std::string& p) {
  auto i = p.rfind('/');
  return i == std::string::npos ? p : p.substr(i + 1);
}

std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char buf[PATH_MAX];
  if (!::getcwd(buf, sizeof buf)) return p;
  return std::string(buf) + "/" + p;
}

bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

class Client {
 public:
  Client(const DtpgetOptions& o, ToolContext& ctx) : o_(o), ctx_(ctx), ctl_(kMaxDatagram) {}
  int run();

 private:
  // hashing: everything is here; waiting for the hash (and -o -'s reader) to catch up.
  enum class Phase { opening, transferring, hashing, finished };
  void say(const std::string& s) {
    if (!o_.verbosity.quiet) ctx_.say(ctx_.program + ": " + s);
  }
  int fail(const Error& e) {
    ctx_.say(ctx_.program + ": " + e.message());
    return exit_code(e.kind);
  }
  void stop_with(int code) {
    if (result_ < 0) result_ = code;
  }
  void send(std::size_t n);
  void send_open();
  void on_meta(const Packet& p);
  void start_pass();
  void repair();
  void unblock_prefix();
  void on_readable();
  void process(std::span<const std::uint8_t> d);
  void flush_writes();
  void tick();
  void finish();
  void verified();
  void incomplete(const std::string& why, bool cancelled);
  void refuse_new_range(const Data& x);
  void save(bool durable);
  void show_progress(bool final);
  std::string peer_name() const { return server_ + " " + name_; }

  const DtpgetOptions& o_;
  ToolContext& ctx_;
  Reactor r_;
  DatagramSocket sock_;
  // Receive buffers, used in turn: while the next ones fill, the hasher still reads the in-order
  // payload of the last few from them (PrefixHasher::lend) instead of from the file.
  std::vector<std::unique_ptr<RecvBatch>> rbs_;
  unsigned rb_i_ = 0;
  std::vector<PrefixHasher::Span> lend_;
  std::uint64_t lend_end_ = 0;
  bool lending_ = false;
  static constexpr std::uint64_t kLendReach = 4u << 20;
  std::vector<std::uint8_t> ctl_;
  std::vector<std::span<const std::uint8_t>> dgrams_;
  std::string server_, name_, output_, session_path_;
  SessionState st_;
  bool resumed_ = false, have_meta_ = false, to_stdout_ = false, whole_ = false;
  Fd out_;
  std::uint64_t sid_ = 0, cookie_ = 0;
  std::size_t datagram_ = 0;
  std::uint16_t chunk_ = 0;
  Phase phase_ = Phase::opening;
  std::uint32_t pass_ = 0;
  bool end_seen_ = false, dirty_ = false, save_failed_ = false;
  std::int64_t started_ = 0, last_heard_ = 0, last_data_ = 0, last_new_ = 0, pass_started_ = 0, next_open_ = 0;
  std::int64_t open_backoff_ = 250 * kMs, last_progress_ = 0;
  std::int64_t meta_at_ = 0;  // for -v: where the time went (handshake, transfer, hash wait)
  std::int64_t received_at_ = 0;
  std::uint64_t hashed_then_ = 0;
  std::uint32_t highest_seq_ = 0;
  double gap_ns_ = 0;  // smoothed time between DATA datagrams
  // Mid-pass repairs: holes behind what this pass already delivered are asked for at once
  // (urgent REQUEST parts), so the in-order prefix, its hash and -o - keep moving.
  std::uint16_t parts_used_ = 0;
  std::uint64_t pass_max_end_ = 0;
  RangeSet repaired_;
  std::int64_t repaired_since_ = 0;
  std::uint64_t last_prefix_ = 0;   // where the in-order prefix ended at the last look
  std::int64_t prefix_since_ = 0;   // and since when
  std::int64_t rtt_ns_ = 0;         // least time from a pass's REQUEST to its first DATA
  bool pass_data_seen_ = false;
  std::int64_t last_repair_ = 0;
  bool have_seq_ = false;
  std::uint64_t recv_count_ = 0, new_bytes_ = 0, dup_bytes_ = 0, start_have_ = 0;
  // Separate received ranges: a server that sends what dtp(7) says makes at most
  // fragment_limit() of them; beyond kMaxReceivedRanges (a payload that large) data that
  // would start another is dropped, and one pass in two is cut short to ask for the holes.
  std::uint64_t fragment_limit_ = 0;
  std::size_t resumed_ranges_ = 0;
  std::uint32_t uncut_pass_ = 0;
  bool budget_said_ = false;
  // Writes gathered from one receive batch: runs of file-contiguous chunks.
  std::vector<struct iovec> iov_;
  std::uint64_t run_start_ = 0, run_end_ = 0;
  std::unique_ptr<PrefixHasher> hasher_;  // after out_: it reads out_ until destroyed
  Coin coin_;
  int result_ = -1;
  std::unique_ptr<Timer> tick_timer_, save_timer_, deadline_timer_;
};

void Client::send(std::size_t n) {
  auto r = send_datagram(sock_.fd.get(), {ctl_.data(), n}, nullptr);
  (void)r;  // a refused or dropped control datagram is retried by the protocol's timers
}

void Client::send_open() {
  send(encode_open(ctl_.data(), sid_, chunk_, name_));
  std::int64_t now = mono_ns();
  next_open_ = now + open_backoff_;
  open_backoff_ = std::min<std::int64_t>(open_backoff_ * 3 / 2, 2000 * kMs);
}

void Client::save(bool durable) {
  if (to_stdout_ || !have_meta_) return;
  if (durable && out_.valid()) ::fdatasync(out_.get());
  if (auto s = save_session(session_path_, st_, durable); !s) {
    // Said once: the transfer goes on (only resuming is at stake), and a line per
    // --save-interval would bury everything else.
    if (!save_failed_) say(s.error().message() + " (the transfer goes on, but cannot be resumed from it)");
    save_failed_ = true;
  } else {
    save_failed_ = false;
  }
  dirty_ = false;
}

void Client::on_meta(const Packet& p) {
  if (have_meta_) return;
  const Meta& m = p.meta;
  cookie_ = m.cookie;
  if (m.chunk > chunk_) {
    stop_with(fail(protocol_error("bad-chunk", peer_name(),
                                  fmt::format("the server grants {}-byte chunks; we asked for at most {}", m.chunk, chunk_),
                                  false)));
    return;
  }
  Digest sha;
  std::copy(m.sha256.begin(), m.sha256.end(), sha.begin());
  if (resumed_) {
    if (m.size != st_.size || sha != st_.sha256) {
      stop_with(fail(protocol_error(
          "payload-changed", peer_name(),
          fmt::format("the payload changed on the server since the session was saved (size {} -> {}, "
                      "sha256 {}... -> {}...); refusing to mix old and new bytes. Run again with "
                      "--restart to fetch it anew",
                      st_.size, m.size, hex(std::span(st_.sha256).first(8)), hex(std::span(sha).first(8))),
          false)));
      return;
    }
    out_.reset(::open(output_.c_str(), O_RDWR | O_CLOEXEC));
    if (!out_.valid()) {
      stop_with(fail(errno_error(ErrorKind::io, "output " + output_ + " (use --restart to start over)", errno)));
      return;
    }
    // Cut short since the session was saved (truncated, or rewritten shorter): what lay
    // beyond is gone, so it is fetched again rather than found missing by the hash at the end.
    struct stat now;
    if (::fstat(out_.get(), &now) == 0 && static_cast<std::uint64_t>(now.st_size) < st_.size) {
      std::uint64_t cut = static_cast<std::uint64_t>(now.st_size);
      std::uint64_t lost = st_.received.overlap(cut, st_.size);
      if (lost > 0) {
        say(fmt::format("output {} is {} bytes now, not {}: fetching the {} received beyond that again", output_,
                        cut, st_.size, human_bytes(static_cast<double>(lost))));
        st_.received.remove(cut, st_.size);
      }
    }
  } else {
    st_.server = server_;
    st_.name = name_;
    st_.output = to_stdout_ ? "-" : output_;
    st_.size = m.size;
    st_.sha256 = sha;
    st_.wanted.clear();
    if (o_.ranges.empty()) {
      st_.wanted.add(0, m.size);
    } else {
      for (const auto& r : o_.ranges) st_.wanted.add(r.start, std::min(r.end, m.size));
      if (st_.wanted.empty() && m.size > 0) {
        stop_with(fail(make_error(ErrorKind::usage, "--range", fmt::format("nothing within the payload's {} bytes", m.size))));
        return;
      }
    }
    st_.received.clear();
    if (to_stdout_) {
      const char* tmp = std::getenv("TMPDIR");
      std::string dir = tmp && *tmp ? tmp : "/tmp";
      out_.reset(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
      if (!out_.valid()) {
        stop_with(fail(errno_error(ErrorKind::io, "spool file in " + dir, errno)));
        return;
      }
    } else {
      out_.reset(::open(output_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!out_.valid()) {
        stop_with(fail(errno_error(ErrorKind::io, "output " + output_, errno)));
        return;
      }
    }
  }
  st_.chunk = m.chunk;
  resumed_ranges_ = st_.received.count();
  fragment_limit_ = fragment_limit(st_.size, st_.chunk, st_.wanted.count(), resumed_ranges_);
  struct stat sb;
  if (::fstat(out_.get(), &sb) == 0 && S_ISREG(sb.st_mode) && static_cast<std::uint64_t>(sb.st_size) != m.size) {
    if (::ftruncate(out_.get(), static_cast<off_t>(m.size)) != 0) {
      stop_with(fail(errno_error(ErrorKind::io, "output " + output_, errno)));
      return;
    }
  }
  whole_ = st_.wanted.total() == m.size;  // the whole payload (also when it is empty)
  if (whole_) {
    hasher_ = std::make_unique<PrefixHasher>(out_.get(), to_stdout_ ? ctx_.stdout_fd : -1);
    hasher_->advance(st_.received.first_missing_from(0));
  }
  have_meta_ = true;
  last_new_ = meta_at_ = mono_ns();
  start_have_ = st_.received.total();
  save(true);
  phase_ = Phase::transferring;
  if (resumed_ && o_.verbosity.verbose) {
    say(fmt::format("resuming {}: {} of {} already here", name_, human_bytes(static_cast<double>(start_have_)),
                    human_bytes(static_cast<double>(st_.wanted.total()))));
  }
  if (st_.received.missing_from(st_.wanted).empty()) {
    finish();
    return;
  }
  start_pass();
}

void Client::start_pass() {
  RangeSet missing = st_.received.missing_from(st_.wanted);
  if (missing.empty()) return;
  std::vector<ByteRange> ranges = missing.ranges();
  ++pass_;
  std::size_t max_len = std::min<std::size_t>(datagram_, 65000);
  std::size_t from = 0, next = 0;
  std::uint64_t rate = o_.rate_bits > 0 ? static_cast<std::uint64_t>(o_.rate_bits) : 0;
  // A pass asks for at most 256 datagrams' worth of ranges (some 60k holes: what 10% loss
  // leaves of a first pass that outran its repairs); the rest of kMaxParts is left for
  // mid-pass repairs, and what does not fit waits for the next pass.
  std::uint16_t part = 0;
  for (; part < 256 && from < ranges.size(); ++part) {
    send(encode_request(ctl_.data(), max_len, sid_, pass_, part, rate, cookie_, ranges, from, next));
    from = next;
  }
  parts_used_ = part;
  pass_max_end_ = 0;
  repaired_.clear();
  repaired_since_ = mono_ns();
  pass_data_seen_ = false;
  end_seen_ = false;
  pass_started_ = last_data_ = mono_ns();
}

void Client::repair() {
  constexpr std::uint64_t kMargin = 256 << 10;  // in flight or reordered, not yet lost
  if (parts_used_ >= kMaxParts || pass_max_end_ <= kMargin) return;
  RangeSet wanted_behind;
  for (const auto& r : st_.wanted.ranges()) {
    if (r.start >= pass_max_end_ - kMargin) break;
    wanted_behind.add(r.start, std::min(r.end, pass_max_end_ - kMargin));
  }
  // A repair can be lost like anything else: ask again for what is still missing once the
  // server has had time to send it (repairs go to the front of its queue).
  std::int64_t now = mono_ns();
  std::int64_t expiry = std::max<std::int64_t>(80 * kMs, 3 * rtt_ns_ + 50 * kMs);
  if (now - repaired_since_ > expiry) {
    repaired_.clear();
    repaired_since_ = now;
  }
  RangeSet holes = repaired_.missing_from(st_.received.missing_from(wanted_behind));
  if (holes.empty()) return;
  std::vector<ByteRange> ranges = holes.ranges();
  std::size_t max_len = std::min<std::size_t>(datagram_, 65000);
  std::uint64_t rate = o_.rate_bits > 0 ? static_cast<std::uint64_t>(o_.rate_bits) : 0;
  std::size_t from = 0, next = 0;
  for (int k = 0; k < 16 && parts_used_ < kMaxParts && from < ranges.size(); ++k) {
    send(encode_request(ctl_.data(), max_len, sid_, pass_, parts_used_++, rate, cookie_, ranges, from, next, true));
    for (std::size_t i = from; i < next; ++i) repaired_.add(ranges[i].start, ranges[i].end);
    from = next;
  }
}

void Client::unblock_prefix() {
  // The hash (and -o -) can only move past the first hole. If it sits still while the pass
  // runs on, ask again for the first few holes at once, whatever was asked before: a lost
  // repair there would otherwise hold everything behind it for a whole repair period.
  constexpr std::uint64_t kMargin = 256 << 10;
  std::int64_t now = mono_ns();
  std::uint64_t pre = st_.received.first_missing_from(0);
  if (pre != last_prefix_) {
    last_prefix_ = pre;
    prefix_since_ = now;
    return;
  }
  if (now - prefix_since_ < 40 * kMs || parts_used_ >= kMaxParts || pass_max_end_ <= kMargin ||
      pre + kMargin >= pass_max_end_) {
    return;
  }
  prefix_since_ = now;
  RangeSet window;
  window.add(pre, pass_max_end_ - kMargin);
  std::vector<ByteRange> ranges = st_.received.missing_from(window).ranges();
  if (ranges.size() > 32) ranges.resize(32);
  std::size_t next = 0;
  std::uint64_t rate = o_.rate_bits > 0 ? static_cast<std::uint64_t>(o_.rate_bits) : 0;
  send(encode_request(ctl_.data(), std::min<std::size_t>(datagram_, 65000), sid_, pass_, parts_used_++, rate,
                      cookie_, ranges, 0, next, true));
}

void Client::flush_writes() {
  if (iov_.empty()) return;
  std::size_t i = 0;
  std::uint64_t off = run_start_;
  while (i < iov_.size()) {
    int cnt = static_cast<int>(std::min<std::size_t>(iov_.size() - i, IOV_MAX));
    ssize_t n;
    do {
      n = ::pwritev(out_.get(), iov_.data() + i, cnt, static_cast<off_t>(off));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      stop_with(fail(errno_error(ErrorKind::io, "write " + output_, errno)));
      iov_.clear();
      return;
    }
    // A short write (disk full): advance through the iovecs and try the rest, once more.
    std::size_t left = static_cast<std::size_t>(n);
    while (i < iov_.size() && left >= iov_[i].iov_len) {
      left -= iov_[i].iov_len;
      off += iov_[i].iov_len;
      ++i;
    }
    if (i < iov_.size() && left > 0) {
      iov_[i].iov_base = static_cast<std::uint8_t*>(iov_[i].iov_base) + left;
      iov_[i].iov_len -= left;
      off += left;
    }
    if (n == 0) {
      stop_with(fail(make_error(ErrorKind::io, "write " + output_, "no space written")));
      iov_.clear();
      return;
    }
  }
  std::uint64_t before = st_.received.total();
  st_.received.add(run_start_, run_end_);
  std::uint64_t added = st_.received.total() - before;
  if (added > 0) last_new_ = mono_ns();
  new_bytes_ += added;
  dup_bytes_ += (run_end_ - run_start_) - added;
  dirty_ = true;
  iov_.clear();
  if (hasher_) hasher_->advance(st_.received.first_missing_from(0));
}

void Client::process(std::span<const std::uint8_t> d) {
  Packet p;
  if (*decode(d, p)) return;  // corrupt or foreign: the per-datagram checksum caught it
  if (p.session != sid_) return;
  if (phase_ != Phase::opening && phase_ != Phase::transferring) return;  // all here already
  last_heard_ = mono_ns();
  switch (p.type) {
    case Type::data: {
      if (!have_meta_) return;
      if (coin_.flip(o_.faults.drop)) return;  // --drop: as if the network lost it
      const Data& x = p.data;
      ++recv_count_;
      if (!have_seq_ || static_cast<std::int32_t>(x.seq - highest_seq_) > 0) highest_seq_ = x.seq;
      have_seq_ = true;
      if (last_data_ > 0 && last_heard_ > last_data_) {
        // How far apart data arrives (a slow server rate): a pass is not over before a few gaps.
        double gap = static_cast<double>(last_heard_ - last_data_);
        gap_ns_ = gap_ns_ <= 0 ? gap : 0.9 * gap_ns_ + 0.1 * gap;
      }
      last_data_ = last_heard_;
      std::uint64_t end = x.offset + x.bytes.size();
      if (end > st_.size) return;
      if (x.pass == pass_ && end > pass_max_end_) pass_max_end_ = end;
      if (x.pass == pass_ && !pass_data_seen_) {
        pass_data_seen_ = true;
        std::int64_t rtt = last_heard_ - pass_started_;
        if (rtt > 0 && (rtt_ns_ == 0 || rtt < rtt_ns_)) rtt_ns_ = rtt;
      }
      if (st_.received.contains(x.offset, end)) {
        dup_bytes_ += x.bytes.size();
        return;
      }
      if (st_.received.count() >= std::min<std::uint64_t>(fragment_limit_, kMaxReceivedRanges) &&
          !(!iov_.empty() && (x.offset == run_end_ || end == run_start_)) && st_.received.isolated(x.offset, end)) {
        refuse_new_range(x);
        return;
      }
      if (x.offset >= lend_end_) {
        if (lending_) lend_.push_back({x.offset, x.bytes.data(), x.bytes.size()});
        lend_end_ = end;
      }
      if (!iov_.empty() && (x.offset != run_end_ || iov_.size() >= 4096)) flush_writes();
      if (iov_.empty()) run_start_ = run_end_ = x.offset;
      iov_.push_back({const_cast<std::uint8_t*>(x.bytes.data()), x.bytes.size()});
      run_end_ = end;
      return;
    }
    case Type::meta:
      if (phase_ == Phase::opening && !have_meta_) on_meta(p);
      else if (phase_ == Phase::opening) {  // a re-open after the server forgot us
        if (p.meta.size != st_.size || !std::equal(st_.sha256.begin(), st_.sha256.end(), p.meta.sha256.begin())) {
          flush_writes();
          save(true);
          stop_with(fail(protocol_error("payload-changed", peer_name(),
                                        "the payload changed on the server during the transfer; "
                                        "run again with --restart to fetch it anew", false)));
          return;
        }
        cookie_ = p.meta.cookie;
        fragment_limit_ = std::max(fragment_limit_, fragment_limit(st_.size, p.meta.chunk, st_.wanted.count(),
                                                                   resumed_ranges_));
        last_new_ = mono_ns();
        phase_ = Phase::transferring;
        start_pass();
      }
      return;
    case Type::end:
      if (p.end.pass == pass_) end_seen_ = true;
      return;
    case Type::error: {
      ErrorKind k = p.error.code == ErrorCode::bad_request ? ErrorKind::protocol
                  : p.error.code == ErrorCode::busy       ? ErrorKind::connect
                                                          : ErrorKind::io;
      flush_writes();
      save(true);
      stop_with(fail(make_error(k, peer_name(), std::string(p.error.text))));
      return;
    }
    case Type::stop:
      if (p.stop.reason == StopReason::expired) {
        // The server lost our session (restarted, or we were silent): open it again.
        phase_ = Phase::opening;
        open_backoff_ = 250 * kMs;
        send_open();
      } else if (p.stop.reason == StopReason::shutdown) {
        incomplete("the server shut down", false);
      }
      return;
    default:
      return;  // keepalive: heard
  }
}

// `x` would start one received range more than the limit. A server that fragments the
// payload (its DATA, scattered, make more ranges than whole chunks can) is broken or hostile:
// stop, keeping what arrived resumable. Past the memory budget instead (a payload with that
// many holes), drop it: it is asked for again.
void Client::refuse_new_range(const Data& x) {
  if (fragment_limit_ <= kMaxReceivedRanges) {
    flush_writes();
    save(true);
    send(encode_stop(ctl_.data(), sid_, StopReason::cancelled));
    stop_with(fail(protocol_error(
        "fragmented", peer_name(),
        fmt::format("the server fragments the payload: {} separate ranges received, more than {} in "
                    "{}-byte chunks can make{}",
                    st_.received.count(), human_bytes(static_cast<double>(st_.size)), st_.chunk,
                    to_stdout_ ? "" : fmt::format(" (what arrived is in session {})", session_path_)),
        false)));
    return;
  }
  if (!budget_said_) {
    budget_said_ = true;
    say(fmt::format("{}: {} separate ranges received, the most dtpget keeps: data that would start another "
                    "is fetched again later", name_, st_.received.count()));
  }
  // The rest of this pass would mostly be dropped likewise: end it, and ask for the holes
  // (filling them frees room). Not the pass after, so that passes cannot cut each other short.
  if (x.pass == pass_ && pass_ != uncut_pass_) {
    end_seen_ = true;
    uncut_pass_ = pass_ + 1;
  }
}

void Client::on_readable() {
  for (int round = 0; round < 8 && result_ < 0; ++round) {
    RecvBatch& rb = *rbs_[rb_i_];
    if (hasher_) hasher_->reclaim(rb_i_);
    auto n = rb.receive(sock_.fd.get());
    if (!n) {
      if (n.error().kind == ErrorKind::connect && !have_meta_) {
        stop_with(fail(errno_error(ErrorKind::connect, "connect " + server_, ECONNREFUSED)));
      }
      return;  // during a transfer a refusal is a server restarting: the timers retry
    }
    if (*n == 0) break;
    dgrams_.clear();
    for (std::size_t i = 0; i < *n; ++i) {
      if (rb.truncated(i)) continue;
      auto m = rb.message(i);
      std::size_t seg = rb.segment_size(i);
      for (std::size_t off = 0; off < m.size(); off += seg) dgrams_.push_back(m.subspan(off, std::min(seg, m.size() - off)));
    }
    if (o_.faults.reorder) {
      for (std::size_t i = dgrams_.size(); i > 1; --i) std::swap(dgrams_[i - 1], dgrams_[coin_.below(i)]);
    }
    for (auto d : dgrams_) {
      if (result_ >= 0) return;
      process(d);
    }
    flush_writes();  // before the next receive reuses the buffers
    if (lending_ && !lend_.empty()) {
      hasher_->lend(rb_i_, lend_);
      rb_i_ = (rb_i_ + 1) % static_cast<unsigned>(rbs_.size());
    }
    lend_.clear();
    // Lend only while the hasher keeps up (it is within reach of what the buffers hold): far
    // behind (holes before, at 10% loss), lent spans are never used, and cycling through 8 MiB
    // of buffers instead of one costs more in cache misses than it saves (A/B, 2 GiB).
    lending_ = hasher_ && lend_end_ - std::min(lend_end_, hasher_->hashed()) <= kLendReach;
    if (*n < rb.capacity()) break;
  }
  if (result_ >= 0 || phase_ != Phase::transferring) return;
  if (st_.received.total() >= st_.wanted.total() && st_.received.missing_from(st_.wanted).empty()) {
    finish();
    return;
  }
  if (end_seen_) start_pass();
}

void Client::show_progress(bool final) {
  bool on = o_.verbosity.progress.value_or(ctx_.stderr_is_tty) && !o_.verbosity.quiet;
  if (!on) return;
  if (final) {
    ctx_.progress("");
    return;
  }
  std::int64_t now = mono_ns();
  if (now - last_progress_ < 250 * kMs) return;
  last_progress_ = now;
  double want = static_cast<double>(st_.wanted.total());
  double have = static_cast<double>(st_.received.total());
  double secs = static_cast<double>(now - started_) * 1e-9;
  double frac = want > 0 ? have / want : 1.0;
  std::string bar(20, '.');
  std::fill_n(bar.begin(), static_cast<std::size_t>(frac * 20), '#');
  ctx_.progress(fmt::format("{} [{}] {:5.1f}% {} / {}  {}  pass {}", name_, bar, 100 * frac,
                            human_bytes(have), human_bytes(want),
                            human_rate(static_cast<double>(new_bytes_), std::max(secs, 1e-3)), pass_));
}

void Client::tick() {
  if (result_ >= 0) return;
  std::int64_t now = mono_ns();
  if (phase_ == Phase::opening) {
    if (now - last_heard_ > to_ns(o_.timeout_s)) {
      if (have_meta_) incomplete(fmt::format("no answer from {} for {}", server_, human_duration(o_.timeout_s)), false);
      else stop_with(fail(make_error(ErrorKind::timeout, peer_name(), "no answer from the server within " + human_duration(o_.timeout_s))));
      return;
    }
    if (now >= next_open_) send_open();
  } else if (phase_ == Phase::transferring) {
    send(encode_report(ctl_.data(), sid_, pass_, highest_seq_, recv_count_));
    if (now - last_heard_ > to_ns(o_.timeout_s)) {
      incomplete(fmt::format("no answer from {} for {}", server_, human_duration(o_.timeout_s)), false);
      return;
    }
    if (now - last_new_ > to_ns(o_.timeout_s)) {
      // Heard from, but nothing new arrives (everything lost or corrupt on the way).
      incomplete(fmt::format("no new data from {} for {}", server_, human_duration(o_.timeout_s)), false);
      return;
    }
    // A pass is over when no data came for a while: 400 ms, or four datagrams' time at a
    // slow --rate.
    std::int64_t idle = std::max<std::int64_t>(kIdleNs, static_cast<std::int64_t>(4 * gap_ns_));
    if (o_.rate_bits > 0) idle = std::max<std::int64_t>(idle, to_ns(4.0 * static_cast<double>(datagram_) * 8 / o_.rate_bits));
    if (now - last_data_ > idle && now - pass_started_ > idle) {
      start_pass();  // END or REQUEST lost
    } else {
      if (now - last_repair_ >= 50 * kMs) {
        last_repair_ = now;
        repair();
      }
      if (whole_) unblock_prefix();
    }
    if (hasher_) {
      if (auto e = hasher_->failure()) {
        stop_with(fail(*e));
        return;
      }
    }
    show_progress(false);
  }
  tick_timer_->arm(Clock::now() + kTick);
}

void Client::finish() {
  phase_ = Phase::finished;
  for (int i = 0; i < 2; ++i) send(encode_stop(ctl_.data(), sid_, StopReason::done));
  show_progress(true);
  received_at_ = mono_ns();
  hashed_then_ = hasher_ ? hasher_->hashed() : 0;
  if (whole_) {
    // The hash (and -o -'s reader, for as long as it likes) may still lag: wait for it in
    // the reactor, so that signals and the deadline are still heard meanwhile.
    phase_ = Phase::hashing;
    hasher_->notify_when(st_.size, [this] { r_.wake(); });
    return;
  }
  verified();
}

void Client::verified() {
  phase_ = Phase::finished;
  std::string check = "no whole-payload check (--range)";
  if (whole_) {
    auto h = hasher_->finish(st_.size);  // done: notify_when() said so
    if (!h) {
      stop_with(fail(h.error()));
      return;
    }
    Digest got = *h;
    if (got != st_.sha256) {
      if (!to_stdout_) ::unlink(session_path_.c_str());
      stop_with(fail(protocol_error("hash-mismatch", peer_name(),
                                    fmt::format("SHA-256 of the received payload is {}, the server announced {} "
                                                "(the payload changed during the transfer?); run again with --restart",
                                                hex(got), hex(st_.sha256)),
                                    false)));
      return;
    }
    check = fmt::format("sha256 ok ({:.0f}% hashed from the receive buffers; finishing took {:.0f} ms more, for the last {})",
                        st_.size ? 100.0 * static_cast<double>(hasher_->hashed_from_buffers()) / static_cast<double>(st_.size) : 0.0,
                        static_cast<double>(mono_ns() - received_at_) * 1e-6,
                        human_bytes(static_cast<double>(st_.size - std::min(hashed_then_, st_.size))));
  }
  double secs = static_cast<double>(mono_ns() - started_) * 1e-9;  // the hash check included
  if (out_.valid() && !to_stdout_) ::fsync(out_.get());
  if (!to_stdout_) ::unlink(session_path_.c_str());
  if (o_.verbosity.verbose) {
    say(fmt::format("{}: {} in {} ({}), {} pass{}, received {} new bytes ({} duplicate), {}; "
                    "META after {:.0f} ms, data for {:.0f} ms", name_,
                    human_bytes(static_cast<double>(st_.wanted.total())), human_duration(secs),
                    human_rate(static_cast<double>(new_bytes_), std::max(secs, 1e-9)), pass_,
                    pass_ == 1 ? "" : "es", new_bytes_, dup_bytes_, check,
                    static_cast<double>(meta_at_ - started_) * 1e-6,
                    static_cast<double>(received_at_ - std::max(meta_at_, started_)) * 1e-6));
  }
  stop_with(kExitOk);
}

void Client::incomplete(const std::string& why, bool cancelled) {
  if (result_ >= 0) return;
  flush_writes();
  show_progress(true);
  if (sid_) send(encode_stop(ctl_.data(), sid_, StopReason::cancelled));
  if (to_stdout_ || !have_meta_) {
    stop_with(fail(make_error(cancelled ? ErrorKind::cancelled : ErrorKind::timeout, peer_name(),
                              why + (to_stdout_ ? " (nothing to resume: output is stdout)" : ""))));
    return;
  }
  save(true);
  std::uint64_t missing = st_.received.missing_from(st_.wanted).total();
  say(fmt::format("{}: {} with {} of {} missing; session saved to {} (continue with: dtpget --resume {}); "
                  "received {} new bytes ({} duplicate)",
                  name_, why, human_bytes(static_cast<double>(missing)),
                  human_bytes(static_cast<double>(st_.wanted.total())), session_path_, session_path_,
                  new_bytes_, dup_bytes_));
  stop_with(exit_code(ErrorKind::incomplete));
}

void print_info(const SessionState& s, const std::string& path, ToolContext& ctx) {
  RangeSet missing = s.received.missing_from(s.wanted);
  std::string out = fmt::format(
      "session:  {}\nserver:   {}\npayload:  {}\noutput:   {}\nsize:     {} bytes ({})\nsha256:   {}\n"
      "chunk:    {}\nwanted:   {} bytes in {} range(s)\nreceived: {} bytes ({:.1f}%)\nmissing:  {} bytes in {} range(s)\n",
      path, s.server, s.name, s.output, s.size, human_bytes(static_cast<double>(s.size)), hex(s.sha256), s.chunk,
      s.wanted.total(), s.wanted.count(), s.received.total(),
      s.wanted.total() ? 100.0 * static_cast<double>(s.wanted.total() - missing.total()) / static_cast<double>(s.wanted.total()) : 100.0,
      missing.total(), missing.count());
  std::size_t shown = 0;
  for (const auto& r : missing.ranges()) {
    if (shown++ == 20) {
      out += fmt::format("  ... and {} more\n", missing.count() - 20);
      break;
    }
    out += fmt::format("  {}-{} ({} bytes)\n", r.start, r.end, r.end - r.start);
  }
  write_all(ctx.stdout_fd, reinterpret_cast<const std::uint8_t*>(out.data()), out.size());
}

// Chunks are written at their offsets and read back for the hash: only a regular file will
// do. Said before any datagram leaves (and before a session beside it is looked at), not as
// "Illegal seek" or a failed read-back halfway.
Status check_output(const std::string& path) {
  struct stat sb;
  if (path == "-" || ::stat(path.c_str(), &sb) != 0 || S_ISREG(sb.st_mode)) return ok_status();
  return make_error(ErrorKind::io, "output " + path,
                    S_ISDIR(sb.st_mode) ? "is a directory"
                                        : "not a regular file (chunks are written at their offsets; -o - streams "
                                          "to a pipe or device)");
}

int Client::run() {
  if (!o_.info.empty()) {
    auto s = load_session(o_.info);
    if (!s) return fail(s.error());
    print_info(*s, o_.info, ctx_);
    return kExitOk;
  }
  if (!o_.resume.empty()) {
    auto s = load_session(o_.resume);
    if (!s) return fail(s.error());
    st_ = std::move(*s);
    resumed_ = !o_.restart;
    session_path_ = o_.resume;
    server_ = o_.server.empty() ? st_.server : o_.server;
    name_ = o_.name.empty() ? st_.name : o_.name;
    output_ = o_.output.empty() ? st_.output : absolute(o_.output);
    if (name_ != st_.name) {
      return fail(make_error(ErrorKind::usage, "--resume " + o_.resume,
                             "the session is for payload " + st_.name + ", not " + name_));
    }
    if (output_ == "-") return fail(make_error(ErrorKind::usage, "--resume", "a streamed (-o -) transfer cannot be resumed"));
    if (auto st = check_output(output_); !st) return fail(st.error());
  } else {
    server_ = o_.server;
    name_ = o_.name;
    std::string out = o_.output.empty() ? base_name(name_) : o_.output;
    if (out.empty() || out == "." || out == "..") {
      return fail(make_error(ErrorKind::usage, name_, "no file name to write to; give -o"));
    }
    to_stdout_ = out == "-";
    output_ = to_stdout_ ? "-" : absolute(out);
    if (auto st = check_output(output_); !st) return fail(st.error());
    session_path_ = o_.session.empty() ? output_ + ".dtp-session" : o_.session;
    if (!to_stdout_ && !o_.restart && ::access(session_path_.c_str(), F_OK) == 0) {
      // Running the same command again continues where it stopped.
      auto s = load_session(session_path_);
      if (!s) return fail(s.error());
      if (s->server == server_ && s->name == name_ && s->output == output_) {
        st_ = std::move(*s);
        resumed_ = true;
      } else {
        return fail(make_error(ErrorKind::usage, "session " + session_path_,
                               "belongs to another transfer (" + s->server + " " + s->name +
                                   "); use --session or --restart"));
      }
    }
    if (to_stdout_ && !o_.ranges.empty()) {
      return fail(make_error(ErrorKind::usage, "--range", "cannot stream ranges to stdout; give -o FILE"));
    }
  }
  // The protocol's limits on a name (dtp(7)): checked here, since the encoder trusts its
  // caller, and a longer one (argv takes 128 KiB; a session file, 64 KiB) overran the
  // datagram buffer and crashed dtpget.
  if (name_.empty() || name_.size() > kMaxName || name_.find('\0') != std::string::npos) {
    return fail(make_error(ErrorKind::usage, "NAME", fmt::format("must be 1 to {} bytes without NUL (this one has {})",
                                                                 kMaxName, name_.size())));
  }
  if (resumed_ && !o_.ranges.empty()) {
    RangeSet asked;
    for (const auto& r : o_.ranges) asked.add(r.start, std::min(r.end, st_.size));
    if (!(asked == st_.wanted)) {
      return fail(make_error(ErrorKind::usage, "--range", "differs from the session's ranges; use --restart"));
    }
  }
  auto ep = parse_dial_endpoint(server_);
  if (!ep) return fail(ep.error());
  auto addrs = resolve(*ep, false);
  if (!addrs) return fail(addrs.error());
  const SocketAddress& peer = addrs->front();
  std::size_t ip_overhead = peer.family() == AF_INET6 ? 48 : 28;
  if (o_.mtu < 576 + 0u || o_.mtu > 65535) {
    return fail(make_error(ErrorKind::usage, "--mtu " + std::to_string(o_.mtu), "must be between 576 and 65535"));
  }
  datagram_ = std::min<std::size_t>(o_.mtu - ip_overhead, kMaxDatagram);
  chunk_ = static_cast<std::uint16_t>(std::min<std::size_t>(datagram_ - kDataHeaderSize, kMaxChunk));
  auto sock = dial_datagram(peer, o_.buffer_bytes);
  if (!sock) return fail(sock.error());
  sock_ = std::move(*sock);
  enable_gro(sock_, true);
  for (int i = 0; i < kRecvBuffers; ++i) {
    if (sock_.gro) rbs_.push_back(std::make_unique<RecvBatch>(16, 65536));
    else rbs_.push_back(std::make_unique<RecvBatch>(64, std::max<std::size_t>(datagram_, 2048)));
  }
  dgrams_.reserve(rbs_[0]->capacity() * 64);
  lend_.reserve(dgrams_.capacity());
  iov_.reserve(4096);
  do {
    sid_ = secure_random_u64();
  } while (sid_ == 0);

  SignalWatcher sig(r_, [this](int signo) {
    if (signo == SIGUSR1) {
      say(fmt::format("{}: {} of {} received, pass {}, {} duplicate bytes", name_,
                      human_bytes(static_cast<double>(st_.received.total())),
                      human_bytes(static_cast<double>(st_.wanted.total())), pass_, dup_bytes_));
      return;
    }
    incomplete(signo == SIGINT ? "interrupted" : "terminated", true);
  });
  r_.watch(sock_.fd.get(), POLLIN, [this](short) { on_readable(); });
  r_.on_wake([this] {
    if (phase_ == Phase::hashing && result_ < 0 && (hasher_->hashed() >= st_.size || hasher_->failure())) verified();
  });
  tick_timer_ = std::make_unique<Timer>(r_, [this] { tick(); });
  save_timer_ = std::make_unique<Timer>(r_, [this] {
    if (dirty_ && phase_ == Phase::transferring) save(false);
    save_timer_->arm(deadline_after(Clock::now(), o_.save_interval_s));
  });
  save_timer_->arm(deadline_after(Clock::now(), o_.save_interval_s));
  if (o_.deadline_s >= 0) {
    deadline_timer_ = std::make_unique<Timer>(r_, [this] {
      // The deadline is the transfer's: a hash still catching up (or -o -'s reader) is not.
      if (phase_ == Phase::opening || phase_ == Phase::transferring) incomplete("deadline reached", false);
    });
    deadline_timer_->arm(deadline_after(Clock::now(), o_.deadline_s));
  }
  started_ = last_heard_ = mono_ns();
  send_open();
  tick_timer_->arm(Clock::now() + kTick);
  while (result_ < 0) r_.run_once();
  return result_;
}

}  // namespace

int run_dtpget(const DtpgetOptions& o, ToolContext& ctx) {
  Client c(o, ctx);
  return c.run();
}

Result<std::vector<ByteRange>> parse_ranges(std::string_view text) {
  std::vector<ByteRange> out;
  auto bad = [&](std::string_view part, const char* why) {
    return make_error(ErrorKind::usage, "--range " + std::string(part), why);
  };
  auto size_expr = [&](std::string_view s) -> Result<std::uint64_t> {
    // A sum of sizes: "4G+1M" reads as 4 GiB + 1 MiB.
    std::uint64_t total = 0;
    while (!s.empty()) {
      auto plus = s.find('+');
      auto v = parse_size(s.substr(0, plus), "--range");
      if (!v) return v.error();
      if (*v > UINT64_MAX - total) return make_error(ErrorKind::usage, "--range", "offset overflows 64 bits");
      total += *v;
      if (plus == std::string_view::npos) break;
      s.remove_prefix(plus + 1);
    }
    return total;
  };
  while (!text.empty()) {
    auto comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    auto dash = part.find('-');
    auto at = part.find('@');
    if (dash != std::string_view::npos) {
      auto a = size_expr(part.substr(0, dash));
      if (!a) return a.error();
      std::string_view rest = part.substr(dash + 1);
      std::uint64_t e = UINT64_MAX;
      if (!rest.empty()) {
        auto z = size_expr(rest);
        if (!z) return z.error();
        e = *z;
      }
      if (e <= *a) return bad(part, "END must be past START");
      out.push_back({*a, e});
    } else if (at != std::string_view::npos) {
      auto len = size_expr(part.substr(0, at));
      auto a = size_expr(part.substr(at + 1));
      if (!len) return len.error();
      if (!a) return a.error();
      if (*len == 0) return bad(part, "LENGTH must be at least 1");
      if (*len > UINT64_MAX - *a) return bad(part, "range overflows 64 bits");
      out.push_back({*a, *a + *len});
    } else {
      return bad(part, "expected START-END, START- or LENGTH@START");
    }
  }
  if (out.empty()) return make_error(ErrorKind::usage, "--range", "empty");
  return out;
}

Result<double> parse_fraction(std::string_view text, std::string_view flag) {
  std::string s(text);
  bool pct = !s.empty() && s.back() == '%';
  if (pct) s.pop_back();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !(v >= 0)) {
    return make_error(ErrorKind::usage, std::string(flag) + " " + std::string(text), "expected a fraction like 0.1 or 10%");
  }
  if (pct) v /= 100;
  if (v > 1) return make_error(ErrorKind::usage, std::string(flag) + " " + std::string(text), "must be at most 1 (100%)");
  return v;
}

}  // namespace dl
