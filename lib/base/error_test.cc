#include "lib/base/error.h"

#include <doctest/doctest.h>

using namespace dl;

TEST_CASE("exit table: every kind has one documented code") {
  CHECK(exit_code(ErrorKind::io) == 1);
  CHECK(exit_code(ErrorKind::usage) == 2);
  CHECK(exit_code(ErrorKind::resolve) == 3);
  CHECK(exit_code(ErrorKind::connect) == 4);
  CHECK(exit_code(ErrorKind::disconnected) == 5);
  CHECK(exit_code(ErrorKind::protocol) == 6);
  CHECK(exit_code(ErrorKind::timeout) == 7);
  CHECK(exit_code(ErrorKind::too_large) == 8);
  CHECK(exit_code(ErrorKind::incomplete) == 9);
  CHECK(exit_code(ErrorKind::auth) == 10);
  CHECK(exit_code(ErrorKind::cancelled) == 130);
}

TEST_CASE("retryable is decided by the error, not by comparing strings") {
  CHECK(is_retryable(make_error(ErrorKind::connect, "connect x")));
  CHECK(is_retryable(make_error(ErrorKind::disconnected, "x")));
  CHECK_FALSE(is_retryable(make_error(ErrorKind::usage, "x")));
  Error corrupt = protocol_error("bad-checksum", "x", "y");
  CHECK(is_retryable(corrupt));
  Error final_error = protocol_error("version", "x", "y", /*retryable=*/false);
  CHECK_FALSE(is_retryable(final_error));
}
