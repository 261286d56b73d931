// SPDX-License-Identifier: Apache-2.0
// The text of ws-relay's GET /healthz (JSON) and GET /metrics (Prometheus),
// from a copy of the counters: pure functions, so every field and its
// degraded cases are unit-tested without a socket. The loop thread gathers
// a RelayCounters (Relay::counters(), taking the relay's lock for the parts
// it guards) and renders it; nothing here waits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "smws/net/ws_server.h"
#include "smws/redis_stream.h"

namespace smws::relay {

struct AuditCounters {
  std::string error;      // why the last record failed; empty once one is written
  uint64_t failures = 0;  // records refused
};

struct GroupCounters {
  std::string relay_id;
  bool up = false;
  std::string down_reason;  // while !up
  redis::StreamStats stream;
  uint64_t decisions_unavailable = 0;  // "redis is unavailable" answers
  uint64_t decisions_lost = 0;         // won, then lost with Redis's data
};

struct RelayCounters {
  uint64_t events_in = 0;
  uint64_t invalid_lines = 0;
  uint64_t last_seq = 0;
  uint64_t machines = 0;
  uint64_t machines_evicted = 0;
  size_t hitl_pending = 0;
  size_t machine_history_machines = 0;
  size_t machine_history_bytes = 0;
  uint64_t machine_history_evictions = 0;
  uint64_t subscribed = 0;    // clients with a filter
  uint64_t filtered_out = 0;  // deliveries a filter spared
  uint64_t stderr_dropped = 0;
  uint64_t stdout_dropped = 0;
  double uptime_s = 0;
  uint64_t decisions_not_allowed = 0;  // decisions no policy allowed
  std::optional<AuditCounters> audit;  // with --audit
  std::optional<GroupCounters> group;  // with --redis
};

// GET /healthz's body. "status" is "degraded", with "reasons", while the
// audit file refuses records or Redis is away.
std::string healthz_text(const net::ServerStats& server, const RelayCounters& relay);

// HTTP status of GET /healthz: 503 only while Redis is away (a load
// balancer then sends new clients to a relay of the group that has it).
int healthz_status(const RelayCounters& relay);

// GET /metrics's body (Prometheus text format 0.0.4).
std::string metrics_text(const net::ServerStats& server, const RelayCounters& relay);

}  // namespace smws::relay
