// Error: the one error type of the whole family, and the one table that turns it into an exit code.
//
// An Error is a small kind (what went wrong, in terms a caller can act on), an errno when the
// system said something, a stable identifier for protocol faults ("bad-checksum"), and a context
// string naming the object ("connect 10.0.0.2:9000"). It is a value, never thrown across the
// library boundary. It is not a logging facility: the library never prints; tools do.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace dl {

enum class ErrorKind {
  usage,         // bad flags or arguments
  resolve,       // host name did not resolve
  connect,       // could not connect, bind or listen
  disconnected,  // the peer went away (and, for a tool, did not come back in time)
  timeout,       // nothing heard from the peer within the receive timeout
  protocol,      // the peer (or an input) broke the wire format
  too_large,     // a message exceeds a configured limit
  io,            // local read/write failure (stdin, stdout, files)
  incomplete,    // stopped before the end, with state saved to resume from (dtpget)
  auth,          // the peer could not be authenticated, or refused our credentials (keys)
  cancelled,     // stopped by a signal or by the caller
};

struct Error {
  ErrorKind kind = ErrorKind::io;
  int sys_errno = 0;        // 0 when the system was not involved
  std::string id;           // stable identifier for protocol faults, e.g. "bad-checksum"; may be empty
  std::string context;      // what we were doing: "connect 127.0.0.1:9000", "stdin"
  std::string detail;       // free text when errno does not say it all
  bool final = false;       // retrying cannot help (a version mismatch, a lost session, a peer
                            // that stopped on purpose), whatever the kind says

  // "connect 127.0.0.1:9000: Connection refused" / "protocol error [bad-checksum]: ..."
  std::string message() const;
};

Error make_error(ErrorKind kind, std::string context, std::string detail = {});
Error errno_error(ErrorKind kind, std::string context, int err);
// A protocol fault; `retryable` false marks it final (see is_retryable).
Error protocol_error(std::string id, std::string context, std::string detail, bool retryable = true);

// The one place that decides whether a link should drop the connection and try again
// (true) or give up on the whole session (false): by kind (a dropped connection or corruption
// heals with a new connection; usage, local I/O and limits do not), unless the error is final.
// Authentication failures are made final, except where the link lowers that (see link.cc).
bool is_retryable(const Error& e);

// The family's exit-code table, for every tool (also in README and every man page, EXIT STATUS):
//   0 ok, 1 io, 2 usage, 3 resolve, 4 connect, 5 disconnected, 6 protocol, 7 timeout,
//   8 too large, 9 incomplete (resumable), 10 auth, 130 cancelled.
inline constexpr int kExitOk = 0;
int exit_code(ErrorKind kind);
std::string_view kind_name(ErrorKind kind);

// Result<T>: a value or an Error, for functions that may fail softly (`try_` style).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace dl
