// cli: the family's way of running a CLI11 parse, for every tool's main(), with or without link
// flags. The one header (with link_flags.h) through which CLI11 comes in.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

#include "lib/app/context.h"

namespace dl {

// --help/--version to stdout (exit 0), usage errors as one line "prog: ..." on stderr (exit 2).
// Returns the exit code, or nullopt to go on. Blocks only on writing stdout/stderr.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx);

}  // namespace dl
