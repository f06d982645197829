// The family's version, printed by --version.
#pragma once
namespace dl {
inline constexpr const char* kVersionString = "0.1.0 (native protocol 1)";
}
