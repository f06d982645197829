#include "lib/app/context.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "doctest/doctest.h"

namespace dl {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/context_test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return tmpl;
}

TEST_CASE("a signal is delivered as a reactor callback, not in a handler") {
  Reactor reactor;
  int got = 0;
  SignalWatcher watch(reactor, [&](int sig) { got = sig; });
  REQUIRE(raise(SIGUSR1) == 0);  // blocked by the watcher: pending until its signalfd is read
  CHECK(got == 0);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (got == 0 && Clock::now() < deadline) reactor.run_once(std::chrono::milliseconds(100));
  CHECK(got == SIGUSR1);
}

TEST_CASE("a stop signal ends an open() that waits for a FIFO's other end") {
  std::string fifo = temp_dir() + "/fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  Reactor reactor;
  int got = 0;
  SignalWatcher watch(reactor, [&](int sig) { got = sig; });
  int stopped_by = 0;
  SUBCASE("a writer comes: an ordinary open") {
    std::thread writer([&] { Fd w(::open(fifo.c_str(), O_WRONLY | O_CLOEXEC)); });
    Fd r(watch.open(fifo.c_str(), O_RDONLY | O_CLOEXEC, 0, &stopped_by));
    writer.join();
    CHECK(r.valid());
    CHECK(stopped_by == 0);
  }
  SUBCASE("SIGTERM comes instead (before or during the wait: either way it ends it)") {
    pthread_t self = pthread_self();
    std::thread killer([self] { pthread_kill(self, SIGTERM); });  // inherits the blocked mask
    killer.join();
    int fd = watch.open(fifo.c_str(), O_RDONLY | O_CLOEXEC, 0, &stopped_by);
    CHECK(fd == -1);
    CHECK(errno == EINTR);
    CHECK(stopped_by == SIGTERM);
    // Taken by the open: not delivered again, and SIGTERM is routed to the watcher as before.
    reactor.run_once(std::chrono::milliseconds(0));
    CHECK(got == 0);
    REQUIRE(raise(SIGTERM) == 0);
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (got == 0 && Clock::now() < deadline) reactor.run_once(std::chrono::milliseconds(100));
    CHECK(got == SIGTERM);
  }
  SUBCASE("a missing file: open()'s own error") {
    CHECK(watch.open((fifo + ".none").c_str(), O_RDONLY, 0, &stopped_by) == -1);
    CHECK(errno == ENOENT);
    CHECK(stopped_by == 0);
  }
}

TEST_CASE("the port file holds the port and a newline, written whole") {
  std::string dir = temp_dir();
  std::string path = dir + "/port";
  REQUIRE(write_port_file(path, 40123));
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "40123\n");
  REQUIRE(write_port_file(path, 7));  // replaced, never appended to
  std::ifstream again(path);
  std::string text2((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  CHECK(text2 == "7\n");
  unlink(path.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("a port file in a directory that does not exist is an io error naming the path") {
  auto st = write_port_file("/nonexistent-dir-for-test/port", 1);
  REQUIRE(!st);
  CHECK(st.error().kind == ErrorKind::io);
  CHECK(st.error().message().find("/nonexistent-dir-for-test") != std::string::npos);
}

TEST_CASE("the exit-status footer lists every code of the family's table") {
  std::string footer = kExitStatusFooter;
  auto listed = [&](const std::string& code) {
    for (auto at = footer.find(code + " "); at != std::string::npos; at = footer.find(code + " ", at + 1)) {
      if (at == 0 || !std::isdigit(static_cast<unsigned char>(footer[at - 1]))) return true;
    }
    return false;
  };
  for (const char* code : {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "130"}) {
    CHECK_MESSAGE(listed(code), code);
  }
}

}  // namespace
}  // namespace dl
