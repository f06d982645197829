#include "lib/app/tool.h"

#include <string>
#include <vector>

#include "doctest/doctest.h"

namespace dl {
namespace {

struct Captured {
  std::vector<std::string> lines;
  ToolContext ctx;
  Captured() {
    ctx.program = "dltool";
    ctx.say = [this](std::string_view l) { lines.emplace_back(l); };
    ctx.progress = [](std::string_view) {};
  }
};

Error refused(ErrorKind kind, const char* reason) { return make_error(kind, "connection from 127.0.0.9:1", reason); }

TEST_CASE("errors read 'program: label: context: reason' and conclude maps the kind to the exit table") {
  Captured c;
  Reactor reactor;
  Reporter r(c.ctx, Verbosity{}, reactor, "sent");
  r.set_label("b");
  int code = r.conclude(make_error(ErrorKind::connect, "connect 10.0.0.2:9000", "Connection refused"));
  CHECK(code == exit_code(ErrorKind::connect));
  REQUIRE(c.lines.size() == 1);
  CHECK(c.lines[0] == "dltool: b: connect 10.0.0.2:9000: Connection refused");
}

TEST_CASE("no error and no link: exit 0 and nothing printed") {
  Captured c;
  Reactor reactor;
  Reporter r(c.ctx, Verbosity{}, reactor, "received");
  CHECK(r.conclude(std::nullopt) == kExitOk);
  CHECK(c.lines.empty());
}

TEST_CASE("-q silences warnings and announcements but never errors; -v adds info") {
  Captured c;
  Reactor reactor;
  Verbosity q;
  q.quiet = true;
  Reporter quiet(c.ctx, q, reactor, "sent");
  quiet.warn("w");
  quiet.announce("a");
  quiet.info("i");
  CHECK(c.lines.empty());
  quiet.error(make_error(ErrorKind::io, "stdout", "Broken pipe"));
  CHECK(c.lines.size() == 1);
  Captured d;
  Verbosity v;
  v.verbose = true;
  Reporter verbose(d.ctx, v, reactor, "sent");
  verbose.info("i");
  verbose.announce("a");  // -v says it through info, not twice
  CHECK(d.lines == std::vector<std::string>{"dltool: i"});
}

TEST_CASE("a flood of refused strangers is rate limited per reason, and the hidden ones are counted") {
  Captured c;
  Reactor reactor;
  Reporter r(c.ctx, Verbosity{}, reactor, "received");
  for (int i = 0; i < 100; ++i) r.on_event(LinkEvent::rejected, "from 127.0.0.9", nullptr);
  CHECK(c.lines.empty());  // no reason: nothing to say
  for (int i = 0; i < 100; ++i) {
    Error e = refused(ErrorKind::timeout, "sent nothing");
    r.on_event(LinkEvent::rejected, "from 127.0.0.9", &e);
  }
  auto shown = c.lines.size();
  CHECK(shown >= 10);
  CHECK(shown < 20);  // a burst, then about one a second
  // Another reason has its own budget: a crowd of idle strangers does not hide the wrong key.
  Error auth = refused(ErrorKind::auth, "handshake failed: wrong pre-shared key");
  r.on_event(LinkEvent::rejected, "from 127.0.0.10", &auth);
  REQUIRE(c.lines.size() == shown + 1);
  CHECK(c.lines.back().find("wrong pre-shared key") != std::string::npos);
  CHECK(c.lines.back().find("more connections refused, not shown") != std::string::npos);  // the count so far
  // More hidden ones: a second after the last refusal, one line says how many.
  for (int i = 0; i < 5; ++i) {
    Error e = refused(ErrorKind::timeout, "sent nothing");
    r.on_event(LinkEvent::rejected, "from 127.0.0.9", &e);
  }
  REQUIRE(c.lines.size() == shown + 1);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (c.lines.size() == shown + 1 && Clock::now() < deadline) {
    reactor.run_once(std::chrono::milliseconds(200));
  }
  CHECK(c.lines.back() == "dltool: 5 more connections refused, not shown");
}

}  // namespace
}  // namespace dl
