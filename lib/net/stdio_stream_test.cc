#include "lib/net/stdio_stream.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

using namespace dl;

namespace {
bool nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }
}  // namespace

TEST_CASE("a pipe is read without blocking, and the shared descriptor keeps its flags") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  StdStream in = StdStream::adopt(p[0], false);
  CHECK(in.is_pipe());
  CHECK_FALSE(in.always_ready());
  CHECK_FALSE(nonblocking(p[0]));  // the pipeline's open file description is left alone
  char buf[16];
  errno = 0;
  CHECK(in.read(buf, sizeof buf) == -1);
  CHECK(errno == EAGAIN);  // empty: "not now", never a blocked tool
  REQUIRE(::write(p[1], "abc", 3) == 3);
  CHECK(in.read(buf, sizeof buf) == 3);
  ::close(p[1]);
  CHECK(in.read(buf, sizeof buf) == 0);  // the writer's close is the end
  ::close(p[0]);
}

TEST_CASE("a full pipe refuses more instead of blocking the writer") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  StdStream out = StdStream::adopt(p[1], true);
  CHECK_FALSE(nonblocking(p[1]));
  std::string chunk(65536, 'x');
  iovec iov{chunk.data(), chunk.size()};
  ssize_t total = 0, n;
  int rounds = 0;
  while ((n = out.writev(&iov, 1)) > 0 && rounds++ < 1000) total += n;
  CHECK(n == -1);
  CHECK(errno == EAGAIN);
  CHECK(total > 0);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("a socket as stdin uses MSG_DONTWAIT; a regular file is always ready") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  StdStream s = StdStream::adopt(sv[0], false);
  CHECK_FALSE(nonblocking(sv[0]));
  char buf[8];
  CHECK(s.read(buf, sizeof buf) == -1);
  CHECK(errno == EAGAIN);
  REQUIRE(::write(sv[1], "hi", 2) == 2);
  CHECK(s.read(buf, sizeof buf) == 2);
  ::close(sv[0]);
  ::close(sv[1]);

  char path[] = "/tmp/stdio_stream_test.XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "data", 4) == 4);
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  StdStream f = StdStream::adopt(fd, false);
  CHECK(f.always_ready());
  CHECK(f.read(buf, sizeof buf) == 4);
  CHECK(f.read(buf, sizeof buf) == 0);
  ::close(fd);
  ::unlink(path);
}
