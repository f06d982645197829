// pymodaq-emu: emulate either side of PyMoDAQ's TCP/IP instrument protocol, in every wire
// generation. Flags only; the work is dl::pymodaq::run_pymodaq_emu().
#include "lib/app/cli.h"

#include <cmath>
#include <cstdio>

#include "lib/base/units.h"
#include "lib/base/version.h"
#include "lib/pymodaq/pymodaq_emu.h"

namespace pm = dl::pymodaq;

int main(int argc, char** argv) {
  dl::ToolContext ctx = dl::process_context("pymodaq-emu");
  CLI::App app{"Emulate either side of PyMoDAQ's TCP/IP instrument protocol (v1, v2, v4, v5).", "pymodaq-emu"};
  app.set_version_flag("--version", std::string("pymodaq-emu ") + dl::kVersionString);
  app.require_subcommand(1);
  app.footer(dl::kExitStatusFooter);

  pm::EmuOptions o;
  std::string dialect = "v4", max_message = "256M", wait = "0", dtype = "<f8";
  std::string shape1 = "256", shape2 = "128x128", shapen = "4x64x64";
  std::string interval = "0.1";
  bool verbose = false, quiet = false;

  auto common = [&](CLI::App* s) {
    s->add_option("--dialect", dialect,
                  "Wire generation: v1 (1.6-2.0.0), v2 (2.0.1-4.0), v4 (4.1-4.4), v5 (5.0), or a PyMoDAQ "
                  "version such as 3.6.2 or 4.1.3 (default v4 = 4.4 layout)");
    s->add_option("--max-message", max_message, "Largest message accepted (default 256M)");
    s->add_flag("-v,--verbose", verbose, "Say more on stderr");
    s->add_flag("-q,--quiet", quiet, "Say only errors on stderr");
  };
  auto keys = [&](CLI::App* s) { dl::add_key_flags(*s, o.tls); };

  auto* grabber = app.add_subcommand("grabber", "Be a detector: dial PyMoDAQ's TCPServer viewer and answer Send Data");
  grabber->add_option("endpoint", o.endpoint, "HOST[:PORT] of the TCPServer plugin (port 6341 by default)")->required();
  grabber->add_option("-w,--wait", wait, "Keep dialing (and redialing after a disconnect) for this long (seconds, inf)");
  grabber->add_option("--data", o.data, "Arrays from FILE or - (stdin) instead of synthetic data");
  grabber->add_option("--dtype", dtype, "Synthetic data's numpy dtype (default <f8)");
  grabber->add_option("--channels", o.synth.channels, "Synthetic channels per reply (default 1)")->check(CLI::Range(1, 64));
  grabber->add_option("--shape-1d", shape1, "Shape of 1D data (default 256)");
  grabber->add_option("--shape-2d", shape2, "Shape of 2D data (default 128x128)");
  grabber->add_option("--shape-nd", shapen, "Shape of ND data (default 4x64x64)");
  grabber->add_option("--noise", o.synth.noise, "Noise relative to the peak (default 0.05)");
  grabber->add_option("--rate", o.rate_hz, "Also push unsolicited Done messages this many times per second");
  grabber->add_option("--push-dim", o.push_dim, "Dimension of pushed data: 0D, 1D, 2D or ND (default 2D)");
  grabber->add_option("-c,--count", o.count, "End after sending this many data messages");
  grabber->add_flag("-k,--keep-open", o.keep_open, "With --data: at the end of the input, repeat the last array");
  grabber->add_option("--name", o.name, "Name of the data (default pymodaq-emu)");
  common(grabber);
  keys(grabber);

  auto* actuator = app.add_subcommand("actuator", "Be a motor: dial PyMoDAQ's TCPServer move plugin and simulate an axis");
  actuator->add_option("endpoint", o.endpoint, "HOST[:PORT] of the TCPServer plugin (port 6341 by default)")->required();
  actuator->add_option("-w,--wait", wait, "Keep dialing (and redialing after a disconnect) for this long (seconds, inf)");
  actuator->add_option("--units", o.axis.units, "Axis units (default mm)");
  actuator->add_option("--velocity", o.axis.velocity, "Units per second; 0 arrives at once (default 1)");
  actuator->add_option("--min", o.axis.min, "Lower limit (default none)");
  actuator->add_option("--max", o.axis.max, "Upper limit (default none)");
  actuator->add_option("--home", o.axis.home, "Home position (default 0)");
  actuator->add_option("--position", o.axis.position, "Starting position (default 0)");
  actuator->add_option("-i,--interval", interval, "position_is interval while moving (default 0.1 s)");
  common(actuator);
  keys(actuator);

  std::string listen;
  auto* server = app.add_subcommand("server", "Be PyMoDAQ's TCPServer plugin: commands from stdin, replies as JSON lines");
  server->add_option("-l,--listen", listen, "[HOST:]PORT to listen on (6341 is PyMoDAQ's; 0 picks one)")->required();
  server->add_option("--expect", o.expect, "Client type to command: grabber or actuator (default grabber)")
      ->check(CLI::IsMember({"grabber", "actuator"}));
  server->add_option("--port-file", o.port_file, "Write the listening port to this file");
  server->add_option("-w,--wait", wait, "Give up when no client has connected after this long (default forever)");
  server->add_option("--linger", o.linger_s, "After quit, wait this long for the client to leave (default 2 s)");
  server->add_flag("--full", o.full, "Every array value in the JSON, not a summary");
  common(server);
  keys(server);

  auto* decoder = app.add_subcommand("decode", "Turn a captured byte stream into JSON lines");
  decoder->add_option("-f,--file", o.input, "Read this file instead of stdin");
  decoder->add_flag("--full", o.full, "Every array value in the JSON, not a summary");
  common(decoder);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::puts(e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    ctx.say(std::string("pymodaq-emu: ") + e.what() + " (see --help)");
    return dl::exit_code(dl::ErrorKind::usage);
  }

  auto usage = [&](const dl::Error& e) {
    ctx.say("pymodaq-emu: " + e.message());
    return dl::exit_code(dl::ErrorKind::usage);
  };
  auto d = pm::parse_dialect(dialect);
  if (!d) return usage(d.error());
  o.dialect = *d;
  auto mm = dl::parse_size(max_message, "--max-message");
  if (!mm) return usage(mm.error());
  if (*mm < 1024 || *mm > (1ull << 32)) return usage(dl::make_error(dl::ErrorKind::usage, "--max-message " + max_message, "must be 1K to 4G"));
  o.limits.max_message = *mm;
  o.verbosity.verbose = verbose;
  o.verbosity.quiet = quiet;
  if (server->parsed()) {
    o.role = pm::Role::server;
    o.endpoint = listen;
    if (wait == "0") wait = "inf";  // a listener waits for its client by default
  } else if (grabber->parsed()) {
    o.role = pm::Role::grabber;
  } else if (actuator->parsed()) {
    o.role = pm::Role::actuator;
  } else {
    o.role = pm::Role::decode;
  }
  if (auto st = dl::check_key_flags(o.tls, o.role == pm::Role::server); !st) return usage(st.error());
  auto w = dl::parse_duration(wait, "--wait");
  if (!w) return usage(w.error());
  o.wait_s = *w;
  if (o.role == pm::Role::grabber) {
    auto dt = pm::parse_dtype(dtype);
    if (!dt || !dt->numeric()) return usage(dl::make_error(dl::ErrorKind::usage, "--dtype " + dtype, "expected a numeric numpy dtype such as <f8, >u2, |u1"));
    o.synth.dtype = dtype;
    for (auto [text, flag, dst] : {std::tuple{&shape1, "--shape-1d", &o.synth.shape_1d},
                                   std::tuple{&shape2, "--shape-2d", &o.synth.shape_2d},
                                   std::tuple{&shapen, "--shape-nd", &o.synth.shape_nd}}) {
      auto s = pm::parse_shape(*text, flag);
      if (!s) return usage(s.error());
      std::uint64_t bytes = dt->itemsize * o.synth.channels;
      for (auto x : *s) bytes *= x;
      if (bytes > o.limits.max_message) return usage(dl::make_error(dl::ErrorKind::usage, std::string(flag) + " " + *text, "larger than --max-message"));
      *dst = *s;
    }
    if (o.synth.shape_1d.size() != 1) return usage(dl::make_error(dl::ErrorKind::usage, "--shape-1d " + shape1, "one dimension expected"));
    if (o.synth.shape_2d.size() != 2) return usage(dl::make_error(dl::ErrorKind::usage, "--shape-2d " + shape2, "two dimensions expected"));
    if (o.synth.shape_nd.size() < 3) return usage(dl::make_error(dl::ErrorKind::usage, "--shape-nd " + shapen, "three or more dimensions expected"));
    if (o.push_dim != "0D" && o.push_dim != "1D" && o.push_dim != "2D" && o.push_dim != "ND") {
      return usage(dl::make_error(dl::ErrorKind::usage, "--push-dim " + o.push_dim, "expected 0D, 1D, 2D or ND"));
    }
    if (!(o.rate_hz >= 0) || o.rate_hz > 1e6) return usage(dl::make_error(dl::ErrorKind::usage, "--rate", "0 to 1000000 per second"));
    if (!(o.synth.noise >= 0)) return usage(dl::make_error(dl::ErrorKind::usage, "--noise", "must be >= 0"));
  }
  if (o.role == pm::Role::actuator) {
    auto i = dl::parse_duration(interval, "--interval");
    if (!i) return usage(i.error());
    if (!(*i >= 0.001)) return usage(dl::make_error(dl::ErrorKind::usage, "--interval " + interval, "at least 0.001 s"));
    o.update_s = *i;
    if (!(o.axis.min <= o.axis.max)) return usage(dl::make_error(dl::ErrorKind::usage, "--min/--max", "min must not exceed max"));
    if (std::isnan(o.axis.velocity) || o.axis.velocity < 0) return usage(dl::make_error(dl::ErrorKind::usage, "--velocity", "must be >= 0"));
  }
  return pm::run_pymodaq_emu(o, ctx);
}
