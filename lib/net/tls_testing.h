// Pre-shared keys written at test time, for the unit tests of the TLS gate and the secure
// connector. Test-only (testonly in BUILD); never linked into a tool.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "lib/net/tls.h"

namespace dl::testing {

inline const std::string kKeyA(64, 'a'), kKeyB(64, 'b');

// A key file `name` in the test's temporary folder holding `hex` (mode 0600, as TlsConfig
// insists); its path.
inline std::string psk_file(const std::string& name, const std::string& hex) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string path = std::string(tmp ? tmp : "/tmp") + "/" + name;
  ::unlink(path.c_str());
  std::ofstream(path) << "datalink " << hex << "\n";
  ::chmod(path.c_str(), 0600);
  return path;
}

// The loaded key material of one side with the pre-shared key in `file`.
inline std::shared_ptr<TlsConfig> psk_config(const std::string& file, TlsRole role) {
  TlsFlags f;
  f.psk_file = file;
  auto r = TlsConfig::load(f, role);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message()));
  return *r;
}

}  // namespace dl::testing
