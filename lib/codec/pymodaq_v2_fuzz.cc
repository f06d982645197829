// Fuzzes the PyMoDAQ v2 decoder (the body is shared: pymodaq_fuzz.inc).
// fuzz-sources: lib/codec/pymodaq_codec.cc lib/codec/pymodaq_types.cc lib/base/error.cc
#define PYMODAQ_FUZZ_DIALECT "v2"
#include "lib/codec/pymodaq_fuzz.inc"
