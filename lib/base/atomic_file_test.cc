#include "lib/base/atomic_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
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

// The temporary name beside the file is predictable (path.tmp.PID): in a shared directory such
// as /tmp, someone else may have put a symlink there. Following it would write our content
// (a --gen-psk key, a session file) into whatever it points at.
TEST_CASE("write_file_atomically never writes through a symlink planted at its temporary name") {
  char dir[] = "/tmp/dlbase.XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string path = std::string(dir) + "/key.psk";
  std::string victim = std::string(dir) + "/victim";
  REQUIRE(write_file_atomically(victim, std::string_view("precious")).ok());
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  REQUIRE(::symlink(victim.c_str(), tmp.c_str()) == 0);
  for (bool replace : {true, false}) {
    auto st = write_file_atomically(path, std::string_view("secret key"), "--gen-psk", false, 0600, replace);
    auto v = read_small_file(victim, 100);
    REQUIRE(v.ok());
    CHECK(*v == "precious");
    if (st.ok()) {
      auto back = read_small_file(path, 100);
      REQUIRE(back.ok());
      CHECK(*back == "secret key");
      struct stat sb{};
      REQUIRE(::lstat(path.c_str(), &sb) == 0);
      CHECK(S_ISREG(sb.st_mode));
      ::unlink(path.c_str());
    }
    ::unlink(tmp.c_str());
    REQUIRE(::symlink(victim.c_str(), tmp.c_str()) == 0);
  }
  ::unlink(tmp.c_str());
  ::unlink(victim.c_str());
  ::rmdir(dir);
}
