#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fmt/format.h>
#include <vector>

#include "lib/app/dltools.h"
#include "lib/net/stdio_stream.h"

namespace dl {

int run_dlrecv(const DlrecvOptions& o, ToolContext& ctx) {
  Reactor reactor;
  Reporter report(ctx, o.verbosity, reactor, "received");
  std::optional<int> exit_now;
  SignalWatcher signals(reactor, [&](int sig) {
    if (sig == SIGUSR1) {
      report.summary();
      return;
    }
    exit_now = exit_code(ErrorKind::cancelled);
  });

  Fd file;
  int out_fd = ctx.stdout_fd;
  int stopped_by = 0;  // a FIFO waits for its reader: a signal ends that wait as any other
  if (!o.output.empty() && o.output != "-") {
    file.reset(signals.open(o.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644, &stopped_by));
    if (stopped_by) return exit_code(ErrorKind::cancelled);
    if (!file.valid()) {
      report.error(errno_error(ErrorKind::io, o.output, errno));
      return exit_code(ErrorKind::io);
    }
    out_fd = file.get();
  } else if (out_fd < 0) {
    // Started with stdout closed (`>&-`): say so before anyone connects.
    report.error(errno_error(ErrorKind::io, "stdout", EBADF));
    return exit_code(ErrorKind::io);
  }
  Fd ts_file;
  int ts_fd = -1;
  if (o.timestamps) {
    if (o.timestamps->empty() || *o.timestamps == "-") {
      ts_fd = 2;
    } else {
      ts_file.reset(signals.open(o.timestamps->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644, &stopped_by));
      if (stopped_by) return exit_code(ErrorKind::cancelled);
      if (!ts_file.valid()) {
        report.error(errno_error(ErrorKind::io, *o.timestamps, errno));
        return exit_code(ErrorKind::io);
      }
      ts_fd = ts_file.get();
    }
  }
  StdStream output = StdStream::adopt(out_fd, true);
  std::string out_name = o.output.empty() || o.output == "-" ? "stdout" : o.output;
  // The --timestamps log is written without blocking, like the output: lines that do not fit
  // now wait in ts_pending (at most one batch) and delivery pauses until they are written, so
  // a slow reader of the log slows the link instead of losing lines.
  std::optional<StdStream> ts_out;
  if (ts_fd >= 0) ts_out = StdStream::adopt(ts_fd, true);
  std::string ts_name = ts_fd == 2 ? "stderr" : (o.timestamps ? *o.timestamps : "");

  LinkOptions lo = o.link;
  lo.receive_only = true;
  lo.await_peer_end = true;
  Link link(reactor, lo, &report);
  if (auto rc = start_link(link, lo, o.port_file, report)) return *rc;

  std::optional<Error> fatal;
  bool quiet_end = false;           // stdout closed by its reader: stop without a fuss
  std::size_t progress = 0;         // bytes of the oldest message's output already written
  std::uint64_t delivered = 0;
  Reactor::Id out_watch = 0;
  std::uint8_t headers[64][kRecordHeaderSize];
  static const std::uint8_t kNewline = '\n', kNul = '\0';
  std::string ts_pending;
  Reactor::Id ts_watch = 0;

  // Writes what it can of ts_pending: true when all is written; false when the rest waits
  // for POLLOUT, or on an error (then fatal is set).
  auto flush_ts = [&]() -> bool {
    while (!ts_pending.empty()) {
      iovec v{ts_pending.data(), ts_pending.size()};
      ssize_t w = ts_out->writev(&v, 1);
      if (w > 0) {
        ts_pending.erase(0, static_cast<std::size_t>(w));
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        reactor.set_events(ts_watch, POLLOUT);
        return false;
      }
      fatal = errno_error(ErrorKind::io, "write " + ts_name, w < 0 ? errno : EIO);
      return false;
    }
    if (ts_watch) reactor.set_events(ts_watch, 0);
    return true;
  };

  auto pump = [&] {
    if (!flush_ts()) return;
    while (!fatal && !quiet_end) {
      iovec iov[128];
      std::size_t sizes[64];
      int n_iov = 0, n_msg = 0;
      Message m;
      std::size_t skip = progress;
      while (n_msg < 64 && n_iov + 2 <= 128 && (o.count == 0 || delivered + static_cast<std::uint64_t>(n_msg) < o.count) &&
             link.peek(m, static_cast<std::size_t>(n_msg))) {
        iovec parts[2];
        int np = 0;
        if (o.mode == MessageMode::framed) {
          encode_record_header(headers[n_msg], static_cast<std::uint32_t>(m.payload.size()), m.timestamp);
          parts[np++] = {headers[n_msg], kRecordHeaderSize};
        }
        parts[np++] = {const_cast<std::uint8_t*>(m.payload.data()), m.payload.size()};
        if (o.mode == MessageMode::lines) parts[np++] = {const_cast<std::uint8_t*>(&kNewline), 1};
        if (o.mode == MessageMode::null) parts[np++] = {const_cast<std::uint8_t*>(&kNul), 1};
        std::size_t total = 0;
        for (int i = 0; i < np; ++i) total += parts[i].iov_len;
        sizes[n_msg++] = total;
        for (int i = 0; i < np; ++i) {
          iovec p = parts[i];
          if (skip >= p.iov_len) {
            skip -= p.iov_len;
            continue;
          }
          p.iov_base = static_cast<std::uint8_t*>(p.iov_base) + skip;
          p.iov_len -= skip;
          skip = 0;
          if (p.iov_len) iov[n_iov++] = p;
        }
      }
      if (n_msg == 0) break;
      ssize_t w = n_iov ? output.writev(iov, n_iov) : 0;
      if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          reactor.set_events(out_watch, POLLOUT);
          return;
        }
        if (errno == EPIPE) quiet_end = true;
        else fatal = errno_error(ErrorKind::io, "write " + out_name, errno);
        break;
      }
      std::size_t done = progress + static_cast<std::size_t>(w);
      int full = 0;
      while (full < n_msg && done >= sizes[full]) {
        if (ts_out) {
          Message t;
          link.peek(t, static_cast<std::size_t>(full));
          ts_pending += fmt::format("{:.6f} {} {}\n", t.timestamp, t.seq, t.payload.size());
        }
        done -= sizes[full++];
      }
      progress = done;
      if (full) {
        link.consume(static_cast<std::size_t>(full));
        delivered += static_cast<std::uint64_t>(full);
      }
      if (!flush_ts()) return;
      if (o.count && delivered >= o.count) break;
    }
    reactor.set_events(out_watch, 0);
  };
  out_watch = reactor.watch(output.poll_fd(), 0, [&](short) { pump(); });
  if (ts_out) ts_watch = reactor.watch(ts_out->poll_fd(), 0, [&](short) { pump(); });
  report.on_readable_cb = [&] { pump(); };

  bool count_reached = false;
  while (!exit_now && !fatal && !quiet_end) {
    if (o.count && delivered >= o.count && ts_pending.empty()) {
      count_reached = true;
      break;
    }
    if (link.closed() && ts_pending.empty()) {
      // Everything that arrived is written out before we leave, whatever ended the link: no
      // callback will come from a closed link, so pump directly (it waits for POLLOUT itself).
      Message m;
      if (!link.peek(m)) break;  // closed and nothing left to write out
      std::uint64_t before = delivered;
      std::size_t before_progress = progress;
      pump();
      if (delivered != before || progress != before_progress) continue;
    }
    reactor.run_once();
  }
  reactor.unwatch(out_watch);
  if (ts_watch) reactor.unwatch(ts_watch);

  if (exit_now) {
    link.abandon("dlrecv was interrupted");
    if (!o.verbosity.quiet) report.summary();
    return *exit_now;
  }
  // A reader that went away, or --count reached, is a normal end whatever the link says.
  if (fatal) link.abandon("dlrecv stopped: " + fatal->message());
  if (count_reached) link.abandon("dlrecv received the --count messages it wanted");
  if (quiet_end) link.abandon("dlrecv's output was closed");
  if (!fatal && (quiet_end || count_reached)) {
    if (o.verbosity.verbose) report.summary();
    return 0;
  }
  if (!fatal && o.count && delivered < o.count && !link.failure()) {
    // The stream ended (or a classic peer closed with --close-ends) short of --count.
    fatal = make_error(ErrorKind::disconnected, "stream",
                       "the stream ended after " + std::to_string(delivered) + " of the " +
                           std::to_string(o.count) + " messages asked for (--count)");
  }
  return report.conclude(fatal);
}

}  // namespace dl
