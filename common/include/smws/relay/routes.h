// SPDX-License-Identifier: Apache-2.0
// --route PATH=FILTER (docs/subscriptions.md): the flags' values checked
// against each other and the paths ws-relay serves itself. Main thread,
// before the relay runs.
#pragma once

#include <string>
#include <vector>

#include "smws/status.h"
#include "smws/subscription.h"

namespace smws::relay {

// Parses every spec into *out, in order. A spec that does not parse, a path
// the relay already serves (the WebSocket path, /, /healthz, /metrics) or a
// path routed twice is a usage error naming the spec; *out is then partial.
Status parse_routes(const std::vector<std::string>& specs, const std::string& ws_path,
                    std::vector<Route>* out);

}  // namespace smws::relay
