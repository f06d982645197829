#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "lib/app/dltools.h"
#include "lib/net/stdio_stream.h"

namespace dl {

namespace {
struct Exit {
  std::optional<int> code;
};
}  // namespace

int run_dlsend(const DlsendOptions& o, ToolContext& ctx) {
  Reactor reactor;
  Reporter report(ctx, o.verbosity, reactor, "sent");
  Exit exit;
  SignalWatcher signals(reactor, [&](int sig) {
    if (sig == SIGUSR1) {
      report.summary();
      return;
    }
    exit.code = exit_code(ErrorKind::cancelled);
  });

  Fd file;
  int in_fd = ctx.stdin_fd;
  if (!o.file.empty() && o.file != "-") {
    int stopped_by = 0;  // a FIFO waits for its writer: a signal ends that wait as any other
    file.reset(signals.open(o.file.c_str(), O_RDONLY | O_CLOEXEC, 0, &stopped_by));
    if (stopped_by) return exit_code(ErrorKind::cancelled);
    if (!file.valid()) {
      report.error(errno_error(ErrorKind::io, o.file, errno));
      return exit_code(ErrorKind::io);
    }
    in_fd = file.get();
  } else if (in_fd < 0) {
    // Started with stdin closed (`<&-`): say so before dialing anyone.
    report.error(errno_error(ErrorKind::io, "stdin", EBADF));
    return exit_code(ErrorKind::io);
  }
  const std::string in_name = o.file.empty() || o.file == "-" ? "stdin" : o.file;
  StdStream input = StdStream::adopt(in_fd, false);

  LinkOptions lo = o.link;
  lo.await_peer_end = false;  // classic: done once everything is written
  Link link(reactor, lo, &report);
  if (auto rc = start_link(link, lo, o.port_file, report)) return *rc;

  Splitter splitter(o.mode, o.link.max_message);
  bool input_done = false;
  std::optional<Error> fatal;
  Reactor::Id in_watch = 0;

  // Moves every complete message from the splitter into the link; false when the link is full
  // or closed. A closed link has its own failure to report (connection refused, peer gone): its
  // "link is closed" refusal must not become the run's error.
  auto hand_over = [&] {
    std::span<const std::uint8_t> payload;
    double ts;
    while (splitter.peek(payload, ts)) {
      if (link.closed()) return false;
      Error err;
      if (!link.try_send(payload, ts, &err)) {
        if (!err.context.empty() && !link.closed()) fatal = err;
        return false;
      }
      splitter.pop();
    }
    if (splitter.error()) fatal = *splitter.error();
    return true;
  };
  bool waiting_for_room = false;
  // Raw mode reads straight into the link's ring. A message is cut short only by the input
  // (end of input, or a pipe or terminal with no more bytes right now), never by ring room:
  // the next message waits until the ring has room for a whole one. --fixed also waits out an
  // input that has no more bytes right now, so every message but the last has exactly chunk
  // bytes. `pending` bytes of the next message are in the ring, not yet committed.
  std::size_t pending = 0;
  // One call reads at most this much, so a huge --window never holds up the handshake, the
  // writes and the acks behind a long read (the reactor comes back for more at once).
  constexpr std::size_t kPumpBudget = 8u << 20;
  auto pump_raw = [&] {
    std::uint64_t start_bytes = link.stats().bytes_sent;
    while (!input_done && !fatal && !link.closed() && link.stats().bytes_sent - start_bytes < kPumpBudget) {
      auto limit = link.known_send_limit();
      if (!limit) {  // the peer's --max-message is not known yet: on_writable says when it is
        waiting_for_room = true;
        return;
      }
      if (o.fixed && *limit < o.chunk) {
        fatal = make_error(ErrorKind::too_large, "--fixed " + std::to_string(o.chunk),
                           "messages of " + std::to_string(o.chunk) + " bytes exceed the peer's limit of " +
                               std::to_string(*limit) + " bytes (its --max-message)");
        return;
      }
      std::size_t want = std::max(pending, std::min<std::size_t>(o.chunk, *limit));
      auto span = link.reserve(want);
      if (span.size() < want) {
        waiting_for_room = true;
        return;
      }
      ssize_t n = input.read(span.data() + pending, want - pending);
      if (n > 0) {
        pending += static_cast<std::size_t>(n);
        if (pending == want) {
          link.commit(pending, unix_now());
          pending = 0;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) {
        fatal = errno_error(ErrorKind::io, in_name, errno);
        return;
      }
      if (n == 0 || !o.fixed) {  // end of input, or nothing more right now
        if (pending) link.commit(pending, unix_now());
        pending = 0;
      }
      if (n == 0) {
        input_done = true;
        link.finish();
      }
      return;
    }
  };
  auto pump = [&] {
    waiting_for_room = false;
    if (o.mode == MessageMode::raw) pump_raw();
    std::uint64_t start_bytes = link.stats().bytes_sent;
    while (o.mode != MessageMode::raw && !input_done && !fatal &&
           link.stats().bytes_sent - start_bytes < kPumpBudget) {
      // Delimited or framed input: hand over every complete message, then read more.
      bool blocked = !hand_over();
      if (blocked) waiting_for_room = true;
      if (blocked || fatal) break;
      auto space = splitter.space();
      if (space.empty()) break;
      ssize_t n = input.read(space.data(), space.size());
      if (n > 0) {
        splitter.filled(static_cast<std::size_t>(n));
      } else if (n == 0) {
        splitter.end_of_input();
        blocked = !hand_over();
        if (blocked) waiting_for_room = true;
        if (blocked || fatal) break;
        input_done = true;
        link.finish();
      } else {
        if (errno != EAGAIN && errno != EINTR) fatal = errno_error(ErrorKind::io, in_name, errno);
        break;
      }
    }
    reactor.set_events(in_watch, input_done || fatal || waiting_for_room ? 0 : POLLIN);
  };
  in_watch = reactor.watch(input.poll_fd(), POLLIN, [&](short) { pump(); });
  // Input waits while the replay ring is full; an ack that frees room resumes it.
  report.on_writable_cb = [&] {
    if (!input_done) pump();
  };
  report.on_readable_cb = [&] {
    Message m;
    while (link.peek(m)) link.consume();  // dlsend ignores what the peer sends
  };

  // After bad input (or a message the peer cannot take), everything handed over before it is
  // still delivered and acknowledged; only then is the peer told and the error reported.
  while (!exit.code && !link.closed() && !(fatal && link.acknowledged())) {
    if (fatal) reactor.set_events(in_watch, 0);
    reactor.run_once();
  }
  reactor.unwatch(in_watch);

  if (exit.code) {
    link.abandon("dlsend was interrupted");
    if (!o.verbosity.quiet) report.summary();
    return *exit.code;
  }
  if (fatal) link.abandon("dlsend: " + fatal->message());
  return report.conclude(fatal);
}

}  // namespace dl
