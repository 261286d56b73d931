// SPDX-License-Identifier: Apache-2.0
// The whole text of a small file the relay reads at start and on SIGHUP
// (users file, JWT keys and secret, policy, the audit file's last line).
// Errors name `what` and the path: kNotFound (missing), kIo (anything else).
// Thread: any; no shared state.
#pragma once

#include <string>

#include "smws/status.h"

namespace smws::auth {

Status read_file_text(const std::string& path, const std::string& what, std::string* out);

}  // namespace smws::auth
