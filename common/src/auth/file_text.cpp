// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/file_text.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace smws::auth {

Status read_file_text(const std::string& path, const std::string& what, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return Status::Error(err == ENOENT || err == ENOTDIR ? Status::kNotFound : Status::kIo, err,
                         what + " " + path + ": " + std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Error(Status::kIo, EIO, what + " " + path + ": read error");
  *out = text.str();
  return Status::Ok();
}

}  // namespace smws::auth
