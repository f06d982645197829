#include "lib/net/stream.h"
#include "lib/net/net_testing.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

using namespace dl;
using namespace dl::testing;
using namespace std::chrono_literals;

namespace {

std::pair<Fd, Fd> a_pipe() {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  return {Fd(p[0]), Fd(p[1])};
}

}  // namespace

TEST_CASE("a socket stream: non-blocking read, writev, half-close keeps the other way open") {
  Reactor r;
  auto [x, y] = socket_pair();
  auto a = Stream::from_fd(r, std::move(x));
  auto b = Stream::from_fd(r, std::move(y));
  CHECK(a->type() == Stream::Type::socket);
  CHECK(a->nonblocking());
  char buf[16];
  CHECK(b->read(buf, sizeof buf) == -1);
  CHECK(errno == EAGAIN);
  iovec v[2] = {{const_cast<char*>("he"), 2}, {const_cast<char*>("llo"), 3}};
  CHECK(a->writev(v, 2) == 5);
  REQUIRE(a->shutdown_write());
  CHECK(a->write_shut());
  CHECK(a->write("x", 1) == -1);
  CHECK(b->read(buf, sizeof buf) == 5);
  CHECK(std::string(buf, 5) == "hello");
  CHECK(b->read(buf, sizeof buf) == 0);  // end of stream
  CHECK(b->write("back", 4) == 4);       // the other direction still works
  CHECK(a->read(buf, sizeof buf) == 4);
}

TEST_CASE("readable and writable callbacks, level-triggered, only while wanted") {
  Reactor r;
  auto [x, y] = socket_pair();
  auto a = Stream::from_fd(r, std::move(x));
  auto b = Stream::from_fd(r, std::move(y));
  int readable = 0, writable = 0;
  b->on_readable([&] { ++readable; });
  a->on_writable([&] { ++writable; });
  a->want_write(true);
  r.run_once(100ms);
  CHECK(writable == 1);
  a->want_write(false);
  b->want_read(true);
  r.run_once(10ms);
  CHECK(readable == 0);
  CHECK(writable == 1);
  CHECK(a->write("x", 1) == 1);
  r.run_once(100ms);
  r.run_once(100ms);
  CHECK(readable == 2);  // unread: reported again
  b->want_read(false);
  r.run_once(10ms);
  CHECK(readable == 2);
}

TEST_CASE("a callback may destroy its stream") {
  Reactor r;
  auto [x, y] = socket_pair();
  auto a = Stream::from_fd(r, std::move(x));
  auto b = Stream::from_fd(r, std::move(y));
  b->on_readable([&] { b.reset(); });
  b->on_writable([&] { FAIL("called after destruction"); });
  b->want_read(true);
  b->want_write(true);
  CHECK(a->write("x", 1) == 1);
  r.run_once(100ms);
  CHECK(!b);
}

TEST_CASE("a pipe: half-close closes the writing end and the reader sees end of file") {
  Reactor r;
  auto [rd, wr] = a_pipe();
  auto w = Stream::from_fd(r, std::move(wr));
  auto rs = Stream::from_fd(r, std::move(rd));
  CHECK(w->type() == Stream::Type::pipe);
  CHECK(w->nonblocking());  // ours: made non-blocking
  CHECK(w->write("abc", 3) == 3);
  REQUIRE(w->shutdown_write());
  CHECK(w->fd() == -1);
  char buf[8];
  CHECK(rs->read(buf, sizeof buf) == 3);
  CHECK(rs->read(buf, sizeof buf) == 0);
}

TEST_CASE("an inherited pipe (stdout-like): private non-blocking description, /dev/null on half-close") {
  Reactor r;
  auto [rd, wr] = a_pipe();
  int out = wr.get();
  auto w = Stream::from_inherited(r, out, true);
  CHECK(w->type() == Stream::Type::pipe);
  CHECK(w->fd() != out);
  CHECK(w->nonblocking());
  CHECK((::fcntl(out, F_GETFL) & O_NONBLOCK) == 0);  // the shared description is untouched
  CHECK(w->write("hi", 2) == 2);
  REQUIRE(w->shutdown_write());
  CHECK(::fcntl(out, F_GETFD) >= 0);  // the number stays taken...
  char buf[8];
  CHECK(::read(rd.get(), buf, sizeof buf) == 2);
  CHECK(::read(rd.get(), buf, sizeof buf) == 0);  // ...but no longer holds the pipe open
}

TEST_CASE("an inherited regular file is always readable") {
  Reactor r;
  char path[] = "/tmp/dl_stream_test_XXXXXX";
  Fd f(::mkstemp(path));
  REQUIRE(f.valid());
  ::unlink(path);
  REQUIRE(::write(f.get(), "data", 4) == 4);
  ::lseek(f.get(), 0, SEEK_SET);
  auto s = Stream::from_inherited(r, f.get(), false);
  CHECK(s->type() == Stream::Type::file);
  int readable = 0;
  s->on_readable([&] { ++readable; });
  s->want_read(true);
  r.run_once(1s);
  CHECK(readable == 1);
  char buf[8];
  CHECK(s->read(buf, sizeof buf) == 4);
  CHECK(s->read(buf, sizeof buf) == 0);
}
