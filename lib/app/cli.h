// cli: the family's way of running a CLI11 parse, for every tool's main(), with or without link
// flags. The one header (with link_flags.h) through which CLI11 comes in.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

#include "lib/app/context.h"
#include "lib/net/tls.h"

namespace dl {

// --help/--version to stdout (exit 0), usage errors as one line "prog: ..." on stderr (exit 2).
// Returns the exit code, or nullopt to go on. Blocks only on writing stdout/stderr.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx);

// The key flags of every TCP tool (dl-security(7)): --psk, --gen-psk, --cert, --key, --ca, --pin.
void add_key_flags(CLI::App& app, TlsFlags& f);
// Their checks that read no file, after parsing: combinations (TlsConfig::check) and, for an
// endpoint that is not a stream (udp:), keys at all. Errors: usage.
Status check_key_flags(const TlsFlags& f, bool listen, bool stream_endpoint = true);

}  // namespace dl
