#include "lib/app/context.h"
#include "lib/base/atomic_file.h"

#include <fcntl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <fmt/format.h>

namespace dl {

const char* const kExitStatusFooter =
    "Exit status: 0 ok, 1 local I/O error, 2 usage, 3 cannot resolve, 4 cannot connect/bind,\n"
    "5 disconnected (the peer stayed away or stopped), 6 protocol error, 7 timeout, 8 message too large,\n"
    "9 incomplete (resumable), 10 authentication failed, 130 interrupted (SIGINT, SIGTERM, SIGHUP).\n"
    "Signals: SIGUSR1 prints statistics. Durations: 2.5, 500ms, 10s, 5m, inf. See the man page for more.";


ToolContext process_context(std::string program) {
  std::signal(SIGPIPE, SIG_IGN);
  ToolContext ctx;
  ctx.program = std::move(program);
  // In order 0, 1, 2: open() takes the lowest free number, which is the closed one.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int hold = ::open("/dev/null", O_RDWR);  // not CLOEXEC: children get a sane descriptor too
    if (hold != fd && hold >= 0) ::close(hold);  // cannot happen; keep numbers as they were
    if (fd == 0) ctx.stdin_fd = -1;
    if (fd == 1) ctx.stdout_fd = -1;
  }
  ctx.stderr_is_tty = ::isatty(2) == 1;
  ctx.say = [](std::string_view line) {
    std::string s(line);
    s.push_back('\n');
    [[maybe_unused]] auto n = ::write(2, s.data(), s.size());
  };
  ctx.progress = [tty = ctx.stderr_is_tty](std::string_view line) {
    std::string s = tty ? "\r\033[K" : "";
    s += line;
    if (!tty && !line.empty()) s.push_back('\n');
    [[maybe_unused]] auto n = ::write(2, s.data(), s.size());
  };
  return ctx;
}

SignalWatcher::SignalWatcher(Reactor& reactor, std::function<void(int)> on_signal)
    : reactor_(reactor) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, &old_);
  fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  watch_ = reactor_.watch(fd_.get(), POLLIN, [this, cb = std::move(on_signal)](short) {
    signalfd_siginfo si;
    while (::read(fd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) cb(static_cast<int>(si.ssi_signo));
  });
}

namespace {
// SignalWatcher::open's way out of a blocked open(): the handler jumps back past the call, so
// no signal can slip in between a check and the system call and be lost.
sigjmp_buf* open_jump = nullptr;
volatile sig_atomic_t open_stopped_by = 0;
extern "C" void end_open(int sig) {
  open_stopped_by = sig;
  siglongjmp(*open_jump, 1);
}
}  // namespace

int SignalWatcher::open(const char* path, int flags, mode_t mode, int* stopped_by) {
  const int stops[] = {SIGINT, SIGTERM, SIGHUP};
  sigset_t set;
  sigemptyset(&set);
  struct sigaction jump_out {}, old[3];
  jump_out.sa_handler = end_open;
  sigfillset(&jump_out.sa_mask);
  for (int i = 0; i < 3; ++i) {
    sigaddset(&set, stops[i]);
    sigaction(stops[i], &jump_out, &old[i]);
  }
  sigjmp_buf jump;
  open_jump = &jump;
  open_stopped_by = 0;
  volatile int fd = -1, err = 0;
  if (sigsetjmp(jump, /*savemask=*/1) == 0) {  // a jump back restores the mask: signals blocked
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    fd = ::open(path, flags, mode);
    err = errno;
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  for (int i = 0; i < 3; ++i) sigaction(stops[i], &old[i], nullptr);
  open_jump = nullptr;
  if (open_stopped_by) {
    if (fd >= 0) ::close(fd);  // opened just before the signal came: we stop all the same
    *stopped_by = open_stopped_by;
    errno = EINTR;
    return -1;
  }
  errno = err;
  return fd;
}

SignalWatcher::~SignalWatcher() {
  reactor_.unwatch(watch_);
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

Status write_port_file(const std::string& path, std::uint16_t port) {
  // Not durable: a port file only matters while this process runs.
  return write_file_atomically(path, std::to_string(port) + "\n", "--port-file", /*durable=*/false);
}

}  // namespace dl
