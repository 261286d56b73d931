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

// The one-shot modes, which run before (instead of) the relay:
//   --new-token NAME GROUPS  a fresh token on stdout, its --users line on stderr
//   --verify-audit FILE      "intact, N records" (0) or the first bad line (1)
struct RelayOneShot {
  std::vector<std::string> new_token;  // NAME GROUPS, or empty
  std::string verify_audit;            // FILE, or ""
};
void setup_ws_relay_one_shot(CLI::App& app, RelayOneShot& one_shot);
// The exit code when a one-shot mode was asked for (it has then run), else -1.
int run_ws_relay_one_shot(const RelayOneShot& one_shot);

// Serves until SIGINT/SIGTERM (or stdin EOF with --exit-on-eof); returns the
// exit code.
int run_ws_relay(const RelayOptions& options);

}  // namespace smws
