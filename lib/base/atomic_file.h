// atomic_file: replace a file's whole content so that a reader (or a crash) sees either the old
// or the new content, never a mix: write a temporary file beside it, fsync, rename over, fsync
// the directory. For port files, session files and resume state. Blocks (disk I/O).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lib/base/error.h"

namespace dl {

// Errors: io, with the path (and `what`, e.g. "--session") as context. `mode`: the new file's
// permission bits (before the umask); 0600 for secrets, which are never readable by others,
// not even for a moment. `replace` false: create the file only if it does not exist, even
// against another process doing the same at the same moment (io error with sys_errno EEXIST).
Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes,
                             std::string_view what = {}, bool durable = true, unsigned mode = 0644,
                             bool replace = true);
inline Status write_file_atomically(const std::string& path, std::string_view text,
                                    std::string_view what = {}, bool durable = true,
                                    unsigned mode = 0644, bool replace = true) {
  return write_file_atomically(
      path, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}, what, durable, mode,
      replace);
}

// Reads a whole (small) file, refusing anything larger than `limit`. Errors: io, too_large.
Result<std::string> read_small_file(const std::string& path, std::size_t limit,
                                    std::string_view what = {});

}  // namespace dl
