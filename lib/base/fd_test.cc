#include "lib/base/fd.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

using namespace dl;

namespace {
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }
}  // namespace

TEST_CASE("Fd closes what it owns exactly once, and a move hands ownership over") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  {
    Fd a(p[0]);
    Fd b(std::move(a));
    CHECK_FALSE(a.valid());
    CHECK(b.get() == p[0]);
    Fd c;
    c = std::move(b);
    CHECK(is_open(p[0]));
  }
  CHECK_FALSE(is_open(p[0]));
  Fd w(p[1]);
  int raw = w.release();  // the caller owns it now
  CHECK_FALSE(w.valid());
  CHECK(is_open(raw));
  w.reset(raw);
  w.reset();
  CHECK_FALSE(is_open(raw));
}
