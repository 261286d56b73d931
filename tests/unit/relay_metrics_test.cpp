// SPDX-License-Identifier: Apache-2.0
// relay::healthz_text / metrics_text: GET /healthz and GET /metrics from a
// copy of the counters, without a socket.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "smws/relay/relay_metrics.h"

using nlohmann::json;
using smws::net::ServerStats;
using smws::relay::AuditCounters;
using smws::relay::GroupCounters;
using smws::relay::RelayCounters;
using smws::relay::healthz_status;
using smws::relay::healthz_text;
using smws::relay::metrics_text;

TEST_CASE("healthz is ok with the SPEC's fields and no reasons on a relay of its own", "[relay]") {
  ServerStats s;
  s.clients = 3;
  s.messages_out = 40;
  s.dropped = 2;
  RelayCounters c;
  c.events_in = 17;
  c.uptime_s = 12.9;
  c.subscribed = 1;
  c.filtered_out = 5;
  json j = json::parse(healthz_text(s, c));
  CHECK(j == json{{"status", "ok"}, {"clients", 3}, {"events_in", 17}, {"messages_out", 40}, {"dropped", 2},
                  {"subscribed", 1}, {"filtered_out", 5}, {"uptime_s", 12}});
  CHECK(healthz_status(c) == 200);
}

TEST_CASE("a failing audit file makes healthz degraded with its reason, still 200", "[relay]") {
  RelayCounters c;
  c.audit = AuditCounters{"audit file /x: No space left on device", 4};
  json j = json::parse(healthz_text(ServerStats{}, c));
  CHECK(j["status"] == "degraded");
  CHECK(j["audit"] == "failing");
  CHECK(j["reasons"] == json::array({"audit: audit file /x: No space left on device"}));
  CHECK(healthz_status(c) == 200);
  c.audit->error.clear();
  j = json::parse(healthz_text(ServerStats{}, c));
  CHECK(j["status"] == "ok");
  CHECK(j["audit"] == "ok");
  CHECK_FALSE(j.contains("reasons"));
}

TEST_CASE("Redis away makes healthz 503 and degraded, naming the relay and why", "[relay]") {
  RelayCounters c;
  c.group = GroupCounters{};
  c.group->relay_id = "a1b2c3";
  c.group->up = false;
  c.group->down_reason = "connection refused";
  json j = json::parse(healthz_text(ServerStats{}, c));
  CHECK(j["relay_id"] == "a1b2c3");
  CHECK(j["redis"] == "down");
  CHECK(j["reasons"] == json::array({"redis: connection refused"}));
  CHECK(healthz_status(c) == 503);
  c.group->up = true;
  CHECK(json::parse(healthz_text(ServerStats{}, c))["redis"] == "up");
  CHECK(healthz_status(c) == 200);
}

TEST_CASE("metrics carry the audit and Redis families only when those are on", "[relay]") {
  RelayCounters c;
  c.events_in = 9;
  c.hitl_pending = 2;
  std::string plain = metrics_text(ServerStats{}, c);
  CHECK_THAT(plain, Catch::Contains("\nws_relay_events_in_total 9\n"));
  CHECK_THAT(plain, Catch::Contains("\nws_relay_hitl_pending 2\n"));
  CHECK_THAT(plain, !Catch::Contains("ws_relay_audit_ok"));
  CHECK_THAT(plain, !Catch::Contains("ws_relay_redis_up"));
  c.audit = AuditCounters{"full", 3};
  c.group = GroupCounters{};
  c.group->stream.appended = 11;
  c.group->decisions_lost = 1;
  std::string both = metrics_text(ServerStats{}, c);
  CHECK_THAT(both, Catch::Contains("\nws_relay_audit_ok 0\n"));
  CHECK_THAT(both, Catch::Contains("\nws_relay_audit_failures_total 3\n"));
  CHECK_THAT(both, Catch::Contains("\nws_relay_redis_up 0\n"));
  CHECK_THAT(both, Catch::Contains("\nws_relay_redis_appended_total 11\n"));
  CHECK_THAT(both, Catch::Contains("\nws_relay_redis_decisions_lost_total 1\n"));
}

TEST_CASE("refusals and HTTP answers are labelled by reason and status", "[relay]") {
  ServerStats s;
  s.refused_by_reason[static_cast<size_t>(smws::net::RefusalReason::kOrigin)] = 4;
  s.http_status[101] = 6;
  s.http_status[403] = 4;
  std::string text = metrics_text(s, RelayCounters{});
  CHECK_THAT(text, Catch::Contains("ws_relay_handshakes_refused_total{reason=\"origin\"} 4\n"));
  CHECK_THAT(text, Catch::Contains("ws_relay_http_requests_total{status=\"101\"} 6\n"));
  CHECK_THAT(text, Catch::Contains("ws_relay_http_requests_total{status=\"403\"} 4\n"));
}

TEST_CASE("healthz and metrics name the Redis in use, failovers followed and WAIT timeouts", "[relay]") {
  RelayCounters c;
  c.group = GroupCounters{};
  c.group->up = true;
  c.group->stream.master = "10.0.0.22:6379";
  c.group->stream.failovers = 2;
  c.group->stream.wait_timeouts = 5;
  json j = json::parse(healthz_text(ServerStats{}, c));
  CHECK(j["redis_master"] == "10.0.0.22:6379");
  CHECK(j["redis_failovers"] == 2);
  std::string m = metrics_text(ServerStats{}, c);
  CHECK_THAT(m, Catch::Contains("\nws_relay_redis_failovers_total 2\n"));
  CHECK_THAT(m, Catch::Contains("\nws_relay_redis_wait_timeouts_total 5\n"));
  CHECK_THAT(m, Catch::Contains("# TYPE ws_relay_redis_master_info gauge\n"
                                "ws_relay_redis_master_info{address=\"10.0.0.22:6379\"} 1\n"));
  // Before the first answer (a Sentinel not asked yet): no address.
  c.group->stream.master.clear();
  CHECK_FALSE(json::parse(healthz_text(ServerStats{}, c)).contains("redis_master"));
  CHECK_THAT(metrics_text(ServerStats{}, c), !Catch::Contains("ws_relay_redis_master_info{"));
}
