// pymodaq_types: the values PyMoDAQ's TCP/IP instrument protocol carries, in every wire
// generation (v1 = 1.6.0-2.0.0, v2 = 2.0.1-4.0.x, v4 = 4.1.0-4.4.x, v5 = 5.0.x; see
// /work/shared/notes/pymodaq.md), and the dialect a conversation speaks.
//
// It is: plain data (numpy arrays as dtype string + shape + raw bytes in the dtype's own byte
// order, DataWithAxes, DataToExport, one protocol message) and the numpy dtype arithmetic the
// codecs need. It is not: the wire format (pymodaq_codec.h) or any I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/base/error.h"

namespace dl::pymodaq {

enum class Generation { v1, v2, v4, v5 };

// One wire dialect. v2 switches the position-query command name at 3.6.3; v4's DataWithAxes
// layout changed at 4.1.3 (extra attributes), 4.2 (errors) and 4.4 (units).
struct Dialect {
  Generation gen = Generation::v4;
  int v4_minor = 440;        // v4 only: 410, 413, 420 or 440 (the layout, not the exact release)
  bool new_query_name = true; // v2 only: get_actuator_value (>= 3.6.3) or check_position

  bool v4_units() const { return gen == Generation::v4 && v4_minor >= 440; }
  bool v4_errors() const { return gen == Generation::v4 && v4_minor >= 420; }
  bool v4_extra() const { return gen == Generation::v4 && v4_minor >= 413; }
  // "check_position" or "get_actuator_value": what a server of this dialect sends.
  std::string_view query_command() const;
  // Canonical name: "v1", "v2", "v2-3.6.2", "v4-4.1.0", "v4-4.1.3", "v4-4.2", "v4", "v5".
  std::string name() const;
};

// "v1" | "v2" | "v4" | "v5" (each generation's newest layout), or a PyMoDAQ release number,
// optionally with a leading v: "1.6.3", "3.6.2", "v4.1.3", "4.2.0", "4.4.5", "5.0.2".
// Errors: usage, naming the text.
Result<Dialect> parse_dialect(std::string_view text);

// A numpy dtype descriptor as PyMoDAQ writes it: byte order ('<', '>', '|', '='), kind
// (b i u f c S U V M m), item size in bytes ('U' counts characters of 4 bytes), e.g. "<f8".
struct DType {
  char order = '<';
  char kind = 'f';
  std::size_t itemsize = 8;
  bool big_endian() const;
  bool numeric() const { return kind == 'b' || kind == 'i' || kind == 'u' || kind == 'f' || kind == 'c'; }
};
// Errors: protocol "bad-dtype".
Result<DType> parse_dtype(std::string_view text);

struct Array {
  std::string dtype = "<f8";
  std::vector<std::uint32_t> shape;  // empty = 0-d (never on the wire: PyMoDAQ cannot send it)
  std::string bytes;                 // C order, in the dtype's byte order
  std::size_t elements() const;
  // Element i as a double (complex: the real part; b1: 0/1); NaN for non-numeric dtypes.
  double at(std::size_t i, const DType& dt) const;
};

// Builds an array of `dtype` from doubles (rounded and clamped for integers). dtype must parse.
Array make_array(std::string_view dtype, std::vector<std::uint32_t> shape, const double* values);

// A numpy scalar or Python number: dtype + its bytes (PyMoDAQ allows more than one element;
// receivers read the first).
struct Scalar {
  std::string dtype = "<f8";
  std::string bytes;
  double as_double() const;  // NaN when not numeric or empty
};
Scalar f8_scalar(double v);
Scalar i8_scalar(std::int64_t v);

// A loosely typed value: extra attributes of DataWithAxes/DataToExport, and v5 objects that
// follow an unknown command. `pytype` keeps v5's class name (int, float, bool, complex...).
struct Value {
  enum class Kind { str, bytes, scalar, array, list };
  Kind kind = Kind::str;
  std::string text;     // str / bytes
  Scalar scalar;
  Array array;
  std::vector<Value> items;
  std::string pytype;   // v5 only; for v4 the list tag ("scalar", "bool")
};

struct Axis {
  std::string label, units;
  Array values;
  std::int64_t index = 0, spread_order = 0;
};

// DataWithAxes and its subclasses (DataRaw, DataActuator, DataFromPlugins, DataCalculated...).
struct Dwa {
  std::string cls = "DataRaw";
  double timestamp = 0;
  std::string name, units, source = "raw", dim = "Data0D", distribution = "uniform";
  std::vector<Array> data;
  std::vector<std::string> labels;
  std::string origin;
  std::vector<std::int64_t> nav_indexes;
  std::vector<Axis> axes;
  std::vector<Array> errors;
  std::vector<std::pair<std::string, Value>> extra;
};

struct Dte {
  double timestamp = 0;
  std::string name;
  std::vector<Dwa> data;
  std::vector<std::pair<std::string, Value>> extra;  // v5 only
};

// "Data0D" ... for an array's dimensionality as PyMoDAQ's grabbers label it.
std::string_view dim_name(std::size_t ndim, std::size_t elements);

// What follows a command on the wire.
enum class Payload {
  none,      // GRABBER, ACTUATOR, Send Data xD, move_home, check_position, stop_motion, Quit
  data,      // Done: v1/v2 list of arrays, v4/v5 DataToExport
  position,  // move_abs, move_rel, position_is, move_done: v1/v2 scalar, v4/v5 DataActuator
  path_xml,  // set_info, Info_xml: path list + one parameter's XML
  xml,       // Infos: the client's settings XML
  info,      // Info: name + value (v1 raw big-endian float64, later text)
  axis,      // x_axis / y_axis (v1, v2 only): array + label + units
  unknown,   // not in any plugin's message list: logged and skipped, payload left in the stream
};
// The payload kind of `command` in dialect d (x_axis/y_axis are unknown from v4 on).
Payload payload_of(std::string_view command, const Dialect& d);

// One protocol message: a command string and its payload. Which fields are meaningful follows
// payload_of(command). In v5, a frame that is not a string where a command was expected (the
// payload of an unknown command) is a message with an empty command and `object` set.
struct Message {
  std::string command;
  std::optional<Dte> data;
  std::optional<Dwa> position;     // v1/v2: data[0] holds the scalar as a one-element array
  std::vector<std::string> path;
  std::string xml;
  bool xml_bytes = false;          // v5: sent as bytes (PyMoDAQ 5 does) rather than str
  std::string info_name, info_value;
  std::optional<Array> axis;
  std::string axis_label, axis_units;
  std::optional<Value> object;
};

Message command_message(std::string command);
// A position message with DataActuator(value) as PyMoDAQ builds it (name "actuator").
Message position_message(std::string command, double value, std::string units, double timestamp);
double position_value(const Message& m);  // NaN when there is none

}  // namespace dl::pymodaq
