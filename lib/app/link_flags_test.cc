// Unit tests for link_flags: how the shared flags' text becomes LinkOptions (durations, counts).
#include <doctest/doctest.h>

#include <string>

#include "lib/app/link_flags.h"

using namespace dl;

namespace {
LinkFlags dialer() {
  LinkFlags f;
  f.endpoint = "127.0.0.1:9000";
  return f;
}
}  // namespace

TEST_CASE("durations: defaults, units, inf is for ever, 0 is not at all") {
  auto o = link_options(dialer());
  REQUIRE(o.ok());
  CHECK(o->timeout_ms == 10000);
  CHECK(o->keepalive_ms == 0);   // auto
  CHECK(o->wait_s == 0);         // a dialer tries once
  CHECK(o->reconnect_s == 60);

  LinkFlags l = dialer();
  l.listen = true;
  l.endpoint = "0";
  CHECK(link_options(l)->wait_s < 0);  // a listener waits for ever

  LinkFlags f = dialer();
  f.timeout = "250ms";
  f.keepalive = "0.1ms";  // rounds up to 1 ms, never down to "auto"
  f.wait = "inf";
  f.wait_given = true;
  f.reconnect = "forever";
  o = link_options(f);
  REQUIRE(o.ok());
  CHECK(o->timeout_ms == 250);
  CHECK(o->keepalive_ms == 1);
  CHECK(o->wait_s < 0);
  CHECK(o->reconnect_s < 0);

  f = dialer();
  f.timeout = "inf";
  f.keepalive = "inf";
  o = link_options(f);
  REQUIRE(o.ok());
  CHECK(o->timeout_ms == 0);     // no receive timeout
  CHECK(o->keepalive_ms == -1);  // never
  f.timeout = "0";
  CHECK(link_options(f)->timeout_ms == 0);
}

TEST_CASE("durations: nonsense is a usage error naming the flag") {
  struct Case {
    std::string LinkFlags::*field;
    const char* flag;
  };
  for (Case c : {Case{&LinkFlags::timeout, "--timeout"}, Case{&LinkFlags::keepalive, "--keepalive"},
                 Case{&LinkFlags::wait, "--wait"}, Case{&LinkFlags::reconnect, "--reconnect"}}) {
    for (const char* bad : {"nan", "-1", "-0.5", "soon", "", "1e400", "5 s"}) {
      LinkFlags f = dialer();
      f.*(c.field) = bad;
      f.wait_given = c.field == &LinkFlags::wait;
      auto o = link_options(f);
      std::string flag = c.flag, text = bad;
      CAPTURE(flag);
      CAPTURE(text);
      REQUIRE_FALSE(o.ok());
      CHECK(o.error().kind == ErrorKind::usage);
      std::string msg = o.error().message();
      CAPTURE(msg);
      CHECK(msg.find(c.flag) != std::string::npos);
    }
  }
  LinkFlags f = dialer();
  f.keepalive = "0";
  CHECK_FALSE(link_options(f).ok());
  f = dialer();
  f.timeout = "1s";
  f.keepalive = "1s";
  CHECK_FALSE(link_options(f).ok());  // the link would time itself out
  f = dialer();
  f.timeout = "30d";
  CHECK_FALSE(link_options(f).ok());
  f.timeout = "600h";  // 25 days: more than the wire's milliseconds can say
  CHECK_FALSE(link_options(f).ok());
}

TEST_CASE("parse_count: whole numbers from 1") {
  CHECK(*parse_count("1", "-c") == 1);
  CHECK(*parse_count("18446744073709551615", "-c") == UINT64_MAX);
  for (const char* bad : {"0", "-1", "+1", "1.5", "", "many", "3x", "18446744073709551616"}) {
    CAPTURE(bad);
    auto n = parse_count(bad, "--count");
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().kind == ErrorKind::usage);
    CHECK(n.error().message().find("--count") != std::string::npos);
  }
}
