#include "lib/link/ring_buffer.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace dl;

TEST_CASE("mirrored ring: a wrapped region is contiguous") {
  auto r = ByteRing::create(4096);
  REQUIRE(r);
  ByteRing& ring = *r;
  CHECK(ring.capacity() >= 4096);
  std::size_t cap = ring.capacity();
  ring.produce(cap - 10);
  ring.release_to(cap - 10);
  CHECK(ring.size() == 0);
  auto w = ring.writable();
  REQUIRE(w.size() == cap);
  for (std::size_t i = 0; i < 100; ++i) w[i] = static_cast<std::uint8_t>(i);
  ring.produce(100);
  // The bytes written across the wrap read back through the start of the mapping too.
  CHECK(ring.at(cap)[0] == 10);
  CHECK(std::memcmp(ring.at(ring.tail()), w.data(), 100) == 0);
}

TEST_CASE("grown ring keeps offsets and bytes") {
  auto r = ByteRing::create(4096);
  REQUIRE(r);
  r->produce(3000);
  r->release_to(3000);
  auto w = r->writable();
  for (std::size_t i = 0; i < 2000; ++i) w[i] = static_cast<std::uint8_t>(i * 7);
  r->produce(2000);
  auto g = r->grown(1 << 16);
  REQUIRE(g);
  CHECK(g->capacity() >= (1u << 16));
  CHECK(g->tail() == 3000);
  CHECK(g->head() == 5000);
  for (std::size_t i = 0; i < 2000; ++i) REQUIRE(g->at(3000 + i)[0] == static_cast<std::uint8_t>(i * 7));
}

TEST_CASE("truncate drops unparsed bytes") {
  auto r = ByteRing::create(4096);
  REQUIRE(r);
  r->produce(100);
  r->truncate_to(40);
  CHECK(r->size() == 40);
  CHECK(r->free_space() == r->capacity() - 40);
}
