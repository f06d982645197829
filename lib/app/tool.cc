#include "lib/app/tool.h"

#include <fcntl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fmt/format.h>

namespace dl {

std::optional<int> start_link(Link& link, const LinkOptions& options, const std::string& port_file,
                              Reporter& report) {
  report.attach(&link);
  Status st = link.start();
  if (st && options.listen && !port_file.empty()) st = write_port_file(port_file, port_of(link.local_address()));
  if (st && options.listen && options.endpoint.kind == Endpoint::Kind::tcp && options.endpoint.port == 0 &&
      port_file.empty()) {
    // The system picked the port: nobody can reach us unless we say which (once; -v says it too).
    report.announce("listening on " + link.local_address().to_string());
  }
  if (st) return std::nullopt;
  report.error(st.error());
  return exit_code(st.error().kind);
}

Reporter::Reporter(ToolContext& ctx, Verbosity v, Reactor& reactor, const char* verb)
    : ctx_(ctx), v_(v), reactor_(reactor), verb_(verb), progress_timer_(reactor, [this] { tick(); }),
      refusals_(reactor, [this](const std::string& line) { warn(line); }) {
  progress_on_ = v_.progress.value_or(ctx_.stderr_is_tty && !v_.quiet);
  if (progress_on_) progress_timer_.arm(Clock::now() + std::chrono::seconds(1));
}

Reporter::~Reporter() = default;

void Reporter::tick() {
  if (link_) {
    const LinkStats& s = link_->stats();
    double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    std::uint64_t bytes = std::string_view(verb_) == "sent" ? s.bytes_acked : s.bytes_received;
    ctx_.progress(fmt::format("{}: {} {} {}, {} msgs, {}{}", ctx_.program, verb_, human_bytes(static_cast<double>(bytes)),
                              human_rate(static_cast<double>(bytes), secs),
                              std::string_view(verb_) == "sent" ? s.messages_acked : s.messages_received,
                              link_->ready() ? "connected" : "waiting for peer",
                              s.reconnects ? fmt::format(", {} reconnects", s.reconnects) : ""));
  }
  progress_timer_.arm(Clock::now() + std::chrono::seconds(1));
}

void Reporter::summary() {
  if (progress_on_) ctx_.progress("");
  if (!link_) return;
  const LinkStats& s = link_->stats();
  double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  bool sending = std::string_view(verb_) == "sent";
  bool classic = link_->wire_proto() == Proto::classic;
  std::string line;
  if (sending) {
    // What was read from the input apart from what the peer acknowledged: where to resume.
    line = fmt::format("{}: read {} bytes ({}) in {} messages; {} {} bytes in {} messages, {:.2f} s, {}",
                       ctx_.program, s.bytes_sent, human_bytes(static_cast<double>(s.bytes_sent)), s.messages_sent,
                       classic ? "written" : "acknowledged", s.bytes_acked, s.messages_acked, secs,
                       human_rate(static_cast<double>(s.bytes_acked), secs));
  } else {
    line = fmt::format("{}: {} {} bytes ({}) in {} messages, {:.2f} s, {}", ctx_.program, verb_, s.bytes_received,
                       human_bytes(static_cast<double>(s.bytes_received)), s.messages_received, secs,
                       human_rate(static_cast<double>(s.bytes_received), secs));
  }
  line += fmt::format(", {} reconnects", s.reconnects);
  if (s.resent_bytes) line += fmt::format(", {} resent", human_bytes(static_cast<double>(s.resent_bytes)));
  if (s.protocol_errors) line += fmt::format(", {} protocol errors", s.protocol_errors);
  if (s.garbage_bytes) line += fmt::format(", {} garbage bytes skipped", s.garbage_bytes);
  if (s.negative_ts) {
    line += fmt::format(", {} negative-timestamp frames ({} dropped)", s.negative_ts, s.negative_ts_dropped);
  }
  if (classic) line += sending ? ", classic protocol: no acknowledgements" : ", classic protocol";
  ctx_.say(line);
}

int Reporter::conclude(const std::optional<Error>& local) {
  const Error* e = local ? &*local : (link_ && link_->failure() ? &*link_->failure() : nullptr);
  if (e) error(*e);
  if (v_.verbose || (!e && progress_on_)) summary();
  return e ? exit_code(e->kind) : kExitOk;
}

void Reporter::error(const Error& e) {
  if (progress_on_) ctx_.progress("");
  ctx_.say(prefix() + e.message());
}

std::string Reporter::prefix() const { return ctx_.program + ": " + (label_.empty() ? "" : label_ + ": "); }

void Reporter::info(std::string_view line) {
  if (v_.verbose) ctx_.say(prefix() + std::string(line));
}

void Reporter::announce(std::string_view line) {
  if (!v_.verbose && !v_.quiet) ctx_.say(prefix() + std::string(line));
}

void Reporter::warn(std::string_view line) {
  if (!v_.quiet) ctx_.say(prefix() + std::string(line));
}

void Reporter::on_event(LinkEvent e, const std::string& detail, const Error* why) {
  switch (e) {
    case LinkEvent::listening:
      info("listening on " + detail);
      break;
    case LinkEvent::connected:
      if (!seen_peer_) start_ = Clock::now();  // rates count from the first connection
      seen_peer_ = true;
      info("connected to " + detail);
      if (link_ && link_->wire_proto() == Proto::classic) {
        info("classic protocol: no acknowledgements, so messages in flight when a connection drops can be lost");
      }
      break;
    case LinkEvent::resumed:
      info("reconnected to " + detail + ", session resumed");
      break;
    case LinkEvent::disconnected:
      if (why && why->kind == ErrorKind::protocol) warn(why->message() + (is_retryable(*why) ? "; reconnecting" : ""));
      else if (why) info("connection lost: " + why->message());
      break;
    case LinkEvent::retrying:
      if (why) info("retrying in " + detail + " (" + why->message() + ")");
      break;
    case LinkEvent::rejected:
      if (why) refusals_.refused(detail, *why);
      break;
    case LinkEvent::abandoned:
      if (why) warn("session with " + detail + " abandoned: " + why->message() + "; waiting for the next one");
      break;
    case LinkEvent::warning:
      if (why) warn(why->message());
      break;
    case LinkEvent::completed:
      info(link_ && link_->wire_proto() == Proto::classic ? "all data written (classic: no acknowledgements)"
                                                            : "all data acknowledged");
      break;
    case LinkEvent::closed:
      break;
  }
}

}  // namespace dl
