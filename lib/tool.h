// tool: what every tool's run_<tool>() shares: the context a main() hands in (program name,
// standard descriptors, a sink for stderr lines), signal delivery into the reactor, the
// progress line and the summary. The library never prints by itself: it calls ctx.say().
#pragma once

#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "lib/error.h"
#include "lib/link.h"
#include "lib/reactor.h"

namespace dl {

struct ToolContext {
  std::string program;                             // "dlsend"
  std::function<void(std::string_view)> say;       // one line to stderr (no newline given)
  std::function<void(std::string_view)> progress;  // a progress line that overwrites itself ("" clears)
  int stdin_fd = 0, stdout_fd = 1;
  bool stderr_is_tty = false;
};

// Ready-made context for a real process: stderr output, SIGPIPE ignored (broken pipes become
// EPIPE errors we can handle quietly).
ToolContext process_context(std::string program);

struct Verbosity {
  bool quiet = false;
  bool verbose = false;
  std::optional<bool> progress;  // unset: on when stderr is a terminal
};

// Routes SIGINT, SIGTERM and SIGUSR1 into the reactor through a signalfd, so handlers run as
// ordinary callbacks. Blocks those signals for the calling thread (call before starting threads).
class SignalWatcher {
 public:
  SignalWatcher(Reactor& reactor, std::function<void(int)> on_signal);
  ~SignalWatcher();

 private:
  Reactor& reactor_;
  Fd fd_;
  Reactor::Id watch_ = 0;
  sigset_t old_{};
};

// Writes "PORT\n" to path atomically (write to a temporary name, then rename).
Status write_port_file(const std::string& path, std::uint16_t port);

class Reporter;
// Starts the link (binding or resolving) and, for listeners, writes the port file. On failure
// reports the error and returns the exit code to leave with.
std::optional<int> start_link(Link& link, const LinkOptions& options, const std::string& port_file,
                              Reporter& report);

// Prints link events, the progress line and the summary according to verbosity.
class Reporter : public LinkObserver {
 public:
  Reporter(ToolContext& ctx, Verbosity v, Reactor& reactor, const char* verb /* "sent" */);
  ~Reporter() override;
  void attach(const Link* link) { link_ = link; }
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override;
  void summary();                   // the one-line summary (always, regardless of -q)
  // The end of a run: reports `local` (or else the link's failure) and returns the exit code;
  // prints the summary at -v or when progress was shown.
  int conclude(const std::optional<Error>& local);
  void error(const Error& e);       // "prog: context: reason"
  void info(std::string_view line); // at -v
  void warn(std::string_view line); // unless -q
  void announce(std::string_view line);  // unless -q, and not again at -v (info says it there)
  bool progress_on() const { return progress_on_; }
  std::function<void()> on_readable_cb, on_writable_cb;
  void on_readable() override { if (on_readable_cb) on_readable_cb(); }
  void on_writable() override { if (on_writable_cb) on_writable_cb(); }

 private:
  void tick();
  ToolContext& ctx_;
  Verbosity v_;
  Reactor& reactor_;
  const char* verb_;
  const Link* link_ = nullptr;
  Clock::time_point start_ = Clock::now();
  bool progress_on_ = false;
  bool seen_peer_ = false;
  Timer progress_timer_;
};

}  // namespace dl
