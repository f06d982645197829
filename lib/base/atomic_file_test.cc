#include "lib/base/atomic_file.h"

#include <doctest/doctest.h>
#include <unistd.h>
#include <cstdlib>
#include <string>

using namespace dl;

TEST_CASE("write_file_atomically replaces the whole content") {
  char dir[] = "/tmp/dlbase.XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string path = std::string(dir) + "/f";
  REQUIRE(write_file_atomically(path, std::string_view("first")).ok());
  REQUIRE(write_file_atomically(path, std::string_view("2")).ok());
  auto back = read_small_file(path, 100);
  REQUIRE(back.ok());
  CHECK(*back == "2");
  CHECK_FALSE(read_small_file(path, 0).ok());
  auto bad = write_file_atomically(std::string(dir) + "/no/such/dir/f", std::string_view("x"), "--session");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().kind == ErrorKind::io);
  ::unlink(path.c_str());
  ::rmdir(dir);
}
