#include "lib/app/cli.h"

#include <cstdio>

namespace dl {

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, ToolContext& ctx) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::puts(e.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    ctx.say(ctx.program + ": " + what + " (see --help)");
    return exit_code(ErrorKind::usage);
  }
  return std::nullopt;
}

}  // namespace dl
