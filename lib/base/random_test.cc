#include "lib/base/random.h"

#include <doctest/doctest.h>
#include <set>

using namespace dl;

TEST_CASE("secure_random: distinct ids") {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(secure_random_u64());
  CHECK(seen.size() == 1000);
}
