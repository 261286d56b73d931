// SPDX-License-Identifier: Apache-2.0
// What ws-relay logs when it refuses a connection: the reason and the flag
// that would let the client in. A browser shows nothing of a 403's body, so
// the operator learns it here. Pure functions; the loop thread calls them
// from Relay::on_refused (which RefusalLog rate-limits per address).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smws/net/ws_server.h"
#include "smws/relay/relay_options.h"

namespace smws::relay {

// What a header from a peer may show in our log: printable ASCII ('?' for
// anything else), at most 200 bytes, then "...".
std::string printable(std::string_view text);

// The warning for one refusal under the relay's options. `since` counts the
// refusals from the same address that were not logged since its last line.
std::string refusal_line(const net::RefusedUpgrade& refused, const RelayOptions& options,
                         uint64_t since);

}  // namespace smws::relay
