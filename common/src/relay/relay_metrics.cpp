// SPDX-License-Identifier: Apache-2.0
#include "smws/relay/relay_metrics.h"

#include <nlohmann/json.hpp>

#include "smws/prometheus.h"

namespace smws::relay {

std::string healthz_text(const net::ServerStats& s, const RelayCounters& c) {
  nlohmann::json j = {{"status", "ok"},
                      {"clients", s.clients},
                      {"events_in", c.events_in},
                      {"messages_out", s.messages_out},
                      {"dropped", s.dropped},
                      {"subscribed", c.subscribed},
                      {"filtered_out", c.filtered_out},
                      {"uptime_s", static_cast<uint64_t>(c.uptime_s)}};
  nlohmann::json reasons = nlohmann::json::array();
  if (c.group) {
    j["relay_id"] = c.group->relay_id;
    j["redis"] = c.group->up ? "up" : "down";
    if (!c.group->stream.master.empty()) j["redis_master"] = c.group->stream.master;
    j["redis_failovers"] = c.group->stream.failovers;
    if (!c.group->up) reasons.push_back("redis: " + c.group->down_reason);
  }
  if (c.audit) {
    // Degraded from the first record refused until the next one is written.
    j["audit"] = c.audit->error.empty() ? "ok" : "failing";
    if (!c.audit->error.empty()) reasons.push_back("audit: " + c.audit->error);
  }
  if (!reasons.empty()) {
    j["status"] = "degraded";
    j["reasons"] = std::move(reasons);
  }
  return j.dump();
}

int healthz_status(const RelayCounters& c) { return c.group && !c.group->up ? 503 : 200; }

std::string metrics_text(const net::ServerStats& s, const RelayCounters& c) {
  PrometheusText out;
  out.gauge("ws_relay_clients", "Connected WebSocket clients.", s.clients);
  out.gauge("ws_relay_tcp_connections", "TCP connections held (handshaking, open, closing), this request's included.",
         s.tcp_connections);
  out.counter("ws_relay_events_in_total", "Valid events read from stdin.", c.events_in);
  out.counter("ws_relay_invalid_lines_total", "Stdin lines skipped as invalid.", c.invalid_lines);
  out.counter("ws_relay_messages_out_total", "Messages written to clients.", s.messages_out);
  out.counter("ws_relay_bytes_out_total", "WebSocket bytes written to clients.", s.bytes_out);
  out.counter("ws_relay_messages_in_total", "Messages received from clients.", s.messages_in);
  out.counter("ws_relay_dropped_total", "Messages dropped for slow clients (--slow-client drop).",
         s.dropped);
  out.counter("ws_relay_slow_client_closes_total", "Clients closed with 1013 for a full queue.",
         s.slow_client_closes);
  out.counter("ws_relay_ping_timeouts_total", "Clients closed with 1008 for unanswered pings.",
         s.ping_timeouts);
  out.counter("ws_relay_protocol_errors_total", "Clients closed with 1002/1007/1009.",
         s.protocol_errors);
  out.counter("ws_relay_connections_total", "WebSocket handshakes completed.",
         s.connections_total);
  PrometheusText::Samples refused;
  for (size_t i = 0; i < net::kRefusalReasons; ++i) {
    refused.emplace_back(net::refusal_reason_name(static_cast<net::RefusalReason>(i)),
                         s.refused_by_reason[i]);
  }
  out.counter("ws_relay_handshakes_refused_total",
              "WebSocket upgrades refused (4xx/5xx), by reason.", "reason", refused);
  PrometheusText::Samples statuses;
  for (const auto& [status, count] : s.http_status) {
    statuses.emplace_back(std::to_string(status), count);
  }
  out.counter("ws_relay_http_requests_total",
              "HTTP requests answered, by status (101: WebSocket upgrades).", "status", statuses);
  out.counter("ws_relay_writes_refused_total",
              "Writes to a client's socket that stopped at a full buffer (once per stall, not per event).",
              s.writes_refused);
  out.counter("ws_relay_stderr_dropped_total",
              "Diagnostic lines not written: stderr was not being read.", c.stderr_dropped);
  out.counter("ws_relay_stdout_dropped_total",
              "Lines (client messages, decisions) not printed: stdout was not being read.",
              c.stdout_dropped);
  out.counter("ws_relay_accepts_shed_total", "TCP connections closed at accept: too many still in their handshake.", s.accepts_shed);
  out.counter("ws_relay_accept_errors_total",
              "accept(2) failures for lack of descriptors or memory (EMFILE, ENFILE, ...).",
              s.accept_errors);
  out.gauge("ws_relay_last_seq", "Last seq given (--seq).", c.last_seq);
  out.gauge("ws_relay_machines", "Machines in the snapshot table.", c.machines);
  out.counter("ws_relay_machines_evicted_total",
              "Machines forgotten by the snapshot table at its bound, least recently active first.",
              c.machines_evicted);
  out.gauge("ws_relay_hitl_pending", "Interrupts waiting for a decision.", c.hitl_pending);
  out.counter("ws_relay_decisions_not_allowed_total",
              "Decisions refused because no policy lets their sender decide (--users, --jwt-*, --trusted-proxy).",
              c.decisions_not_allowed);
  if (c.audit) {
    out.gauge("ws_relay_audit_ok", "1 while the --audit file takes records (0 from a refused record until one is written).",
              c.audit->error.empty() ? 1 : 0);
    out.counter("ws_relay_audit_failures_total",
                "Records the --audit file refused (each refused decision or timeout attempt counts).",
                c.audit->failures);
  }
  out.gauge("ws_relay_subscriptions", "Clients with a type or machine filter (?type=, ?machine=, --route, subscribe).",
         c.subscribed);
  out.counter("ws_relay_filtered_out_total", "Deliveries not made because a client's filter did not match the event.", c.filtered_out);
  out.gauge("ws_relay_machine_history_machines", "Machines with events held by --machine-history.", c.machine_history_machines);
  out.gauge("ws_relay_machine_history_bytes", "Bytes held by --machine-history (bounded by --machine-history-bytes).", c.machine_history_bytes);
  out.counter("ws_relay_machine_history_evictions_total", "Machines whose held history was dropped for --machine-history-bytes, least recently "
         "active first.",
         c.machine_history_evictions);
  out.gauge("ws_relay_uptime_seconds", "Seconds since start.", c.uptime_s);
  if (c.group) {
    const redis::StreamStats& g = c.group->stream;
    out.gauge("ws_relay_redis_up", "1 while the Redis link is up (loaded and tailing).",
              c.group->up ? 1 : 0);
    out.counter("ws_relay_redis_appended_total", "Stdin events appended to the group's stream.",
                g.appended);
    out.counter("ws_relay_redis_append_batches_total", "Append script calls acknowledged.",
                g.append_batches);
    out.counter("ws_relay_redis_duplicate_batches_total",
                "Resent batches Redis had already appended (dropped there).", g.duplicates);
    out.counter("ws_relay_redis_append_waits_total",
                "Appends held until the tails (this relay's, the slowest reported) had read "
                "half the history.",
                g.append_waits);
    out.counter("ws_relay_redis_tailed_total", "Stream entries read by the tail.", g.tailed);
    out.gauge("ws_relay_redis_buffered", "Stdin events waiting for Redis.", g.buffered);
    out.counter("ws_relay_redis_buffer_dropped_total",
                "Stdin events dropped: --redis-buffer was full while Redis was away.",
                g.buffer_dropped);
    out.counter("ws_relay_redis_reconnects_total", "Reconnection attempts to Redis.", g.reconnects);
    out.counter("ws_relay_redis_resyncs_total",
                "Reloads of the group's state after a hole in the stream or a new epoch.", g.resyncs);
    out.counter("ws_relay_redis_auth_failures_total", "AUTH refused by Redis.", g.auth_failures);
    out.counter("ws_relay_redis_decisions_unavailable_total",
                "Client decisions answered 'redis is unavailable' (not recorded).",
                c.group->decisions_unavailable);
    out.counter("ws_relay_redis_decisions_lost_total",
                "Client decisions that won in Redis and were lost with its data before the "
                "tail read them (the client is told).",
                c.group->decisions_lost);
    out.counter("ws_relay_redis_failovers_total",
                "Failovers followed: the master changed (Sentinel's answer or +switch-master).", g.failovers);
    out.counter("ws_relay_redis_wait_timeouts_total",
                "WAITs (--redis-replicas) answered by fewer replicas within --redis-wait-timeout; asked again.",
                g.wait_timeouts);
    if (!g.master.empty()) {
      out.gauge("ws_relay_redis_master_info", "The Redis in use (1, labelled with its address).", "address",
                PrometheusText::Samples{{g.master, 1}});
    }
  }
  return out.text();
}

}  // namespace smws::relay
