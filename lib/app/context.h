// context: what every tool's run_<tool>() is handed by its main(): the program name, the
// standard descriptors and a sink for stderr lines; signal delivery into the reactor; the
// verbosity switches. No link, no protocol: DTP and PyMoDAQ tools stand on this alone.
// The library never prints by itself: it calls ctx.say().
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "lib/base/error.h"
#include "lib/base/fd.h"
#include "lib/net/reactor.h"

namespace dl {

// The family's exit-status footer for --help (the table in base/error.h, in words).
extern const char* const kExitStatusFooter;

struct ToolContext {
  std::string program;                             // "dlsend"
  std::function<void(std::string_view)> say;       // one line to stderr (no newline given)
  std::function<void(std::string_view)> progress;  // a progress line that overwrites itself ("" clears)
  int stdin_fd = 0, stdout_fd = 1;                 // -1: the process was started with it closed
  bool stderr_is_tty = false;
};

// Ready-made context for a real process: stderr output, SIGPIPE ignored (broken pipes become
// EPIPE errors we can handle quietly). Call it first thing in main(): a standard descriptor the
// process was started without (`<&-`, `>&-`) is held open on /dev/null, so that no socket or
// eventfd opened later takes its number and gets read or written as stdin/stdout, and is
// reported as -1 in stdin_fd/stdout_fd (tools then fail with "stdin: Bad file descriptor").
ToolContext process_context(std::string program);

struct Verbosity {
  bool quiet = false;
  bool verbose = false;
  std::optional<bool> progress;  // unset: on when stderr is a terminal
};

// Routes SIGINT, SIGTERM, SIGHUP and SIGUSR1 into the reactor through a signalfd, so handlers
// run as ordinary callbacks (a hang-up ends a tool the way SIGTERM does: summary, notice to the
// peer, unix socket removed). Blocks those signals for the calling thread (call before starting threads).
class SignalWatcher {
 public:
  SignalWatcher(Reactor& reactor, std::function<void(int)> on_signal);
  ~SignalWatcher();

  // open(2) for a path the user named. Opening a FIFO blocks until its other end is opened,
  // and the watched signals are blocked (they wait for the reactor), so a plain open() there
  // would ignore SIGINT/SIGTERM/SIGHUP until some writer or reader came. Here those signals end
  // the wait: the result is then -1 with errno EINTR and *stopped_by the signal (taken: it is
  // not delivered to the callback). Otherwise exactly open()'s result and errno. Blocks.
  int open(const char* path, int flags, mode_t mode, int* stopped_by);

 private:
  Reactor& reactor_;
  Fd fd_;
  Reactor::Id watch_ = 0;
  sigset_t old_{};
};

// Writes "PORT\n" to path atomically (write to a temporary name, then rename).
Status write_port_file(const std::string& path, std::uint16_t port);

}  // namespace dl
