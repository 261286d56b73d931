// SPDX-License-Identifier: Apache-2.0
// ws-relay's flags and its run function: it validates the flags, then wires
// a smws::relay::Relay (the relay's logic, common/src/relay/) to a
// smws::net::WsServer (one epoll thread). docs/architecture.md.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "smws/cli.h"
#include "smws/relay/relay_options.h"

namespace smws {

using relay::RelayOptions;


// Declares every flag on app (tests parse an argv through it).
void setup_ws_relay(CLI::App& app, RelayOptions& options);

// Serves until SIGINT/SIGTERM (or stdin EOF with --exit-on-eof); returns the
// exit code.
int run_ws_relay(const RelayOptions& options);

}  // namespace smws
