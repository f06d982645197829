#include "lib/base/error.h"

#include <cstring>

namespace dl {

std::string Error::message() const {
  std::string out;
  if (kind == ErrorKind::protocol) {
    out = "protocol error";
    if (!id.empty()) out += " [" + id + "]";
    if (!context.empty()) out += " " + context;
  } else if (kind == ErrorKind::too_large && !id.empty()) {
    out = context.empty() ? id : context;
  } else {
    out = context;
  }
  auto add = [&](std::string_view s) {
    if (s.empty()) return;
    if (!out.empty()) out += ": ";
    out += s;
  };
  add(detail);
  if (sys_errno != 0) add(std::strerror(sys_errno));
  if (out.empty()) out = std::string(kind_name(kind));
  return out;
}

Error make_error(ErrorKind kind, std::string context, std::string detail) {
  Error e;
  e.kind = kind;
  e.context = std::move(context);
  e.detail = std::move(detail);
  return e;
}

Error errno_error(ErrorKind kind, std::string context, int err) {
  Error e = make_error(kind, std::move(context));
  e.sys_errno = err;
  return e;
}

Error protocol_error(std::string id, std::string context, std::string detail, bool retryable) {
  Error e = make_error(ErrorKind::protocol, std::move(context), std::move(detail));
  e.id = std::move(id);
  e.final = !retryable;
  return e;
}

bool is_retryable(const Error& e) {
  if (e.final) return false;
  switch (e.kind) {
    case ErrorKind::connect:
    case ErrorKind::disconnected:
    case ErrorKind::timeout:
      return true;
    case ErrorKind::protocol:  // corruption heals with a new connection and a resume
      return true;
    case ErrorKind::auth:  // final unless the peer authenticated before: then a mangled
      return true;         // handshake is likelier than changed keys (the link decides)
    case ErrorKind::resolve:  // DNS may come back, but tools fail fast on it (like curl)
    case ErrorKind::usage:
    case ErrorKind::too_large:
    case ErrorKind::io:
    case ErrorKind::incomplete:
    case ErrorKind::cancelled:
      return false;
  }
  return false;
}

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::io: return 1;
    case ErrorKind::usage: return 2;
    case ErrorKind::resolve: return 3;
    case ErrorKind::connect: return 4;
    case ErrorKind::disconnected: return 5;
    case ErrorKind::protocol: return 6;
    case ErrorKind::timeout: return 7;
    case ErrorKind::too_large: return 8;
    case ErrorKind::incomplete: return 9;
    case ErrorKind::auth: return 10;
    case ErrorKind::cancelled: return 130;
  }
  return 1;
}

std::string_view kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::usage: return "usage";
    case ErrorKind::resolve: return "resolve";
    case ErrorKind::connect: return "connect";
    case ErrorKind::disconnected: return "disconnected";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::protocol: return "protocol";
    case ErrorKind::too_large: return "too large";
    case ErrorKind::io: return "io";
    case ErrorKind::incomplete: return "incomplete";
    case ErrorKind::auth: return "auth";
    case ErrorKind::cancelled: return "cancelled";
  }
  return "error";
}

}  // namespace dl
