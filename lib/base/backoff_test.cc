#include "lib/base/backoff.h"

#include <doctest/doctest.h>

using namespace dl;
using std::chrono::milliseconds;

TEST_CASE("exact schedule without jitter: doubles up to the cap") {
  Backoff b({milliseconds(100), milliseconds(1000), 2.0, 0.0}, 1);
  CHECK(b.next() == milliseconds(100));
  CHECK(b.next() == milliseconds(200));
  CHECK(b.next() == milliseconds(400));
  CHECK(b.next() == milliseconds(800));
  CHECK(b.next() == milliseconds(1000));
  CHECK(b.next() == milliseconds(1000));
  b.reset();
  CHECK(b.next() == milliseconds(100));
}

TEST_CASE("jitter stays within [d*(1-j), d] and is not constant") {
  Backoff b({milliseconds(1000), milliseconds(1000), 2.0, 0.5}, 42);
  bool varied = false;
  milliseconds first = b.next();
  for (int i = 0; i < 200; ++i) {
    auto d = b.next();
    CHECK(d >= milliseconds(500));
    CHECK(d <= milliseconds(1000));
    varied = varied || d != first;
  }
  CHECK(varied);
}

TEST_CASE("never zero, never overflowing after many attempts") {
  Backoff b({milliseconds(1), milliseconds(5000), 2.0, 1.0}, 3);
  for (int i = 0; i < 10000; ++i) {
    auto d = b.next();
    REQUIRE(d >= milliseconds(1));
    REQUIRE(d <= milliseconds(5000));
  }
}
