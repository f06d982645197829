// tool: what the link tools' run_<tool>() share on top of context.h: starting a link (and its
// port file), and the Reporter that prints link events, the progress line and the summary.
#pragma once

#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "lib/app/context.h"
#include "lib/base/error.h"
#include "lib/link/link.h"
#include "lib/net/reactor.h"
#include "lib/net/refusal_log.h"

namespace dl {

class Reporter;
// Starts the link (binding or resolving) and, for listeners, writes the port file. On failure
// reports the error and returns the exit code to leave with.
std::optional<int> start_link(Link& link, const LinkOptions& options, const std::string& port_file,
                              Reporter& report);

// Prints link events, the progress line and the summary according to verbosity.
class Reporter : public LinkObserver {
 public:
  Reporter(ToolContext& ctx, Verbosity v, Reactor& reactor, const char* verb /* "sent" */);
  ~Reporter() override;
  void attach(const Link* link) { link_ = link; }
  // Lines about this link start with "LABEL: " (a tool with several links, like dlbridge).
  void set_label(std::string label) { label_ = std::move(label); }
  void on_event(LinkEvent e, const std::string& detail, const Error* why) override;
  void summary();                   // the one-line summary (always, regardless of -q)
  // The end of a run: reports `local` (or else the link's failure) and returns the exit code;
  // prints the summary at -v or when progress was shown.
  int conclude(const std::optional<Error>& local);
  void error(const Error& e);       // "prog: context: reason"
  void info(std::string_view line); // at -v
  void warn(std::string_view line); // unless -q
  void announce(std::string_view line);  // unless -q, and not again at -v (info says it there)
  bool progress_on() const { return progress_on_; }
  std::function<void()> on_readable_cb, on_writable_cb;
  void on_readable() override { if (on_readable_cb) on_readable_cb(); }
  void on_writable() override { if (on_writable_cb) on_writable_cb(); }

 private:
  void tick();
  std::string prefix() const;
  ToolContext& ctx_;
  Verbosity v_;
  Reactor& reactor_;
  const char* verb_;
  const Link* link_ = nullptr;
  std::string label_;
  Clock::time_point start_ = Clock::now();
  bool progress_on_ = false;
  bool seen_peer_ = false;
  Timer progress_timer_;
  RefusalLog refusals_;  // one line per refused connection, rate-limited
};

}  // namespace dl
