// pymodaq_emu: the four roles of the pymodaq-emu tool as one library call.
//   grabber   dials PyMoDAQ's TCPServer viewer plugin, says GRABBER, sends its settings (Infos)
//             and answers "Send Data xD" with Done + synthetic or piped-in data (+ --rate pushes)
//   actuator  dials the TCPServer move plugin, says ACTUATOR, simulates an axis and answers
//             moves with position_is while moving and move_done on arrival
//   server    listens and plays PyMoDAQ's TCPServer side: commands from stdin, one per line;
//             every decoded reply as a JSON line on stdout
//   decode    turns a captured byte stream into JSON lines; errors name the byte offset
// The command-line grammar and the JSON lines are documented in man/pymodaq-emu.1.
// run_pymodaq_emu() blocks until the role ends and returns the family's exit code; it prints
// only through ctx (stderr lines) and ctx.stdout_fd (JSON lines).
#pragma once

#include <cstdint>
#include <string>

#include "lib/app/context.h"
#include "lib/codec/pymodaq_codec.h"
#include "lib/net/tls.h"
#include "lib/pymodaq/axis.h"
#include "lib/pymodaq/synth.h"

namespace dl::pymodaq {

enum class Role { grabber, actuator, server, decode };

struct EmuOptions {
  Role role = Role::grabber;
  std::string endpoint;          // grabber/actuator: HOST:PORT to dial; server: [HOST:]PORT
  Dialect dialect;
  Limits limits;
  double wait_s = 0;             // dialers: keep (re)trying this long; server: wait for a client
  std::string port_file;         // server: write the bound port here
  Verbosity verbosity;
  TlsFlags tls;                  // keys (dl-security(7)), grabber/actuator/server
  std::string name = "pymodaq-emu";  // DataToExport name / settings title

  // grabber
  std::string data;              // "" synthetic, "-" stdin, else a file of arrays
  SynthConfig synth;
  double rate_hz = 0;            // unsolicited Done pushes per second (0: none)
  std::string push_dim = "2D";
  std::uint64_t count = 0;       // grabber: end after this many Done messages (0: no limit)
  bool keep_open = false;        // grabber --data: at end of input, repeat the last array

  // actuator
  AxisConfig axis;
  double update_s = 0.1;         // position_is interval while moving

  // server
  std::string expect = "grabber";
  bool full = false;             // server/decode: every array element in the JSON
  double linger_s = 2;           // server: after quit, how long to wait for the client to leave

  // decode
  std::string input = "-";
};

int run_pymodaq_emu(const EmuOptions& o, ToolContext& ctx);

}  // namespace dl::pymodaq
