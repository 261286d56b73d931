// SPDX-License-Identifier: Apache-2.0
// The relay's own HTTP routes: /healthz (503 while the group's Redis is
// away, so a load balancer sends new clients to a relay that has it),
// /metrics (behind the token), the dashboard page (behind the token: it is
// the way in to the data) and its assets (public: they hold no data, and a
// browser fetches them without the token the page's URL carries).
// Registered once, before the loop runs; the handlers run on the loop thread.
#pragma once

#include <functional>

#include "smws/net/ws_server.h"
#include "smws/relay/relay_metrics.h"
#include "smws/relay/relay_options.h"

namespace smws::relay {

// counters: a copy of what /healthz and /metrics show, gathered on the loop.
void register_relay_routes(net::WsServer* server, const RelayOptions& options,
                           std::function<RelayCounters()> counters);

}  // namespace smws::relay
