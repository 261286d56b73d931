// SPDX-License-Identifier: Apache-2.0
// ws-probe --serve without sockets: the --config format and allow_targets
// (smws/probe_modules.h), the metric text of a /probe and of /metrics
// (smws/net/probe_metrics.h), and the watch's reconnect backoff.
#include <catch2/catch.hpp>

#include <string>

#include "smws/net/probe_exporter.h"
#include "smws/net/probe_metrics.h"
#include "smws/probe_modules.h"

using namespace smws;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

ExporterConfig parsed(const std::string& text) {
  ExporterConfig c;
  Status s = parse_exporter_config(text, &c);
  INFO(s.message);
  REQUIRE(s.ok());
  return c;
}

std::string error_of(const std::string& text) {
  ExporterConfig c;
  Status s = parse_exporter_config(text, &c);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code == Status::kBadInput);
  return s.message;
}

}  // namespace

TEST_CASE("a config's modules are read with every documented key", "[probe][exporter]") {
  auto c = parsed(R"({"modules": {"full": {"duration": 2.5, "send": ["hi", "there"],
      "expect": {"regex": "\"type\":\"snapshot\"", "min_messages": 2}, "headers": {"X-A": "1"},
      "token_file": "/etc/smws/token", "subprotocol": "smws.v1", "origin": "http://x", "insecure": true,
      "deflate": true, "ping": 0.5, "confirm": false}}})");
  REQUIRE(c.module("default") != nullptr);  // always there
  const ProbeModule* m = c.module("full");
  REQUIRE(m != nullptr);
  CHECK(m->duration_s == 2.5);
  CHECK(m->send.size() == 2);
  CHECK(m->expect_min_messages == 2);
  CHECK(expect_matches(*m, R"({"type":"snapshot","machines":[]})"));
  CHECK_FALSE(expect_matches(*m, R"({"type":"state_change"})"));
  CHECK(m->headers.size() == 1);
  CHECK(m->token_file == "/etc/smws/token");
  CHECK(m->subprotocols == std::vector<std::string>{"smws.v1"});
  CHECK(m->insecure);
  CHECK(m->deflate);
  CHECK(m->ping_s == 0.5);
  CHECK_FALSE(m->confirm);
  CHECK(c.module_names() == "default, full");
  CHECK(c.module("missing") == nullptr);
  CHECK(c.module("default")->duration_s == kDefaultModuleDuration);
}

TEST_CASE("config mistakes name the key and what is wrong", "[probe][exporter]") {
  CHECK(has(error_of("[1]"), "object"));
  CHECK(has(error_of("{nope"), "not valid JSON"));
  CHECK(has(error_of(R"({"modulez": {}})"), "modulez: unknown key"));
  CHECK(has(error_of(R"({"modules": {"a": {"duration": 0}}})"), "modules.a.duration"));
  CHECK(has(error_of(R"({"modules": {"a": {"duraton": 1}}})"), "modules.a.duraton: unknown key"));
  CHECK(has(error_of(R"({"modules": {"a": {"expect": {"regex": "("}}}})"), "modules.a.expect.regex"));
  CHECK(has(error_of(R"({"modules": {"a b": {}}})"), "module name"));
  CHECK(has(error_of(R"({"modules": {"a": {"headers": {"X": "1\r\nEvil: 2"}}}})"), "line breaks"));
  CHECK(has(error_of(R"({"modules": {"a": {"find_idle_timeout": 60, "duration": 30}}})"), "find_idle_timeout + 1"));
  CHECK(has(error_of(R"({"watch": [{"target": "ws://h/", "module": "x"}]})"), "names module 'x'"));
  CHECK(has(error_of(R"({"allow_targets": ["ftp://x"]})"), "allow_targets"));
}

TEST_CASE("find_idle_timeout modules get a budget that holds the search", "[probe][exporter]") {
  auto c = parsed(R"({"modules": {"idle": {"find_idle_timeout": 10}}})");
  CHECK(c.module("idle")->duration_s == 35);
}

TEST_CASE("without allow_targets only loopback targets are allowed", "[probe][exporter]") {
  auto c = default_exporter_config();
  CHECK(c.allowed(false, "127.0.0.1", 3002, "/ws/events"));
  CHECK(c.allowed(false, "localhost", 80, "/"));
  CHECK(c.allowed(true, "::1", 443, "/"));
  CHECK_FALSE(c.allowed(false, "10.0.0.1", 80, "/"));
  CHECK_FALSE(c.allowed(false, "example.com", 80, "/"));
  CHECK(c.allowed(false, "127.255.0.9", 80, "/"));
  CHECK(c.allowed(false, "0:0:0:0:0:0:0:1", 80, "/"));
  CHECK_FALSE(c.allowed(false, "127.0.0.1.evil.com", 80, "/"));  // a name that starts like loopback
  CHECK_FALSE(c.allowed(false, "127.evil.com", 80, "/"));
  CHECK_FALSE(c.allowed(false, "localhost.evil.com", 80, "/"));
  CHECK_FALSE(c.allowed(false, "::ffff:10.0.0.1", 80, "/"));
}

TEST_CASE("allow_targets globs match each part of the URL alone", "[probe][exporter]") {
  auto c = parsed(R"({"allow_targets": ["wss://*.example.com/ws/*", "ws://127.0.0.1:*"]})");
  CHECK(c.allowed(true, "relay.example.com", 443, "/ws/events"));
  CHECK_FALSE(c.allowed(true, "relay.example.com", 8443, "/ws/events"));  // omitted port: the default
  CHECK_FALSE(c.allowed(false, "relay.example.com", 80, "/ws/events"));   // scheme
  CHECK_FALSE(c.allowed(true, "relay.example.com", 443, "/admin"));
  // A '*' in the host never reaches into the path or the query.
  CHECK_FALSE(c.allowed(true, "evil.com", 443, "/ws/?x=.example.com/ws/"));
  CHECK_FALSE(c.allowed(true, "example.com.evil.com", 443, "/ws/x"));
  CHECK(c.allowed(false, "127.0.0.1", 9, "/anything?at=all"));
  CHECK_FALSE(c.allowed(false, "127.0.0.2", 9, "/"));
}

TEST_CASE("a /probe's metrics carry the SPEC's names and fixed label sets", "[probe][exporter]") {
  net::ModuleProbe p;
  p.module = "default";
  p.duration_s = 1.25;
  auto& r = p.result;
  r.handshake.outcome = net::HandshakeInfo::Outcome::kOpen;
  r.handshake.status = 101;
  r.handshake.resolve_ms = 0.5;
  r.handshake.connect_ms = 1;
  r.handshake.handshake_ms = 2;
  r.evidence.handshake_done_s = 0.25;
  r.evidence.first_message_s = 0.75;
  r.evidence.messages_in = 3;
  r.evidence.ending = Ending::kDropped;
  r.evidence.close_by = CloseBy::kServer;
  r.evidence.close_code = 1006;
  r.evidence.tcp_end = TcpEnd::kFin;
  r.intermediaries = {{"nginx", "Server: nginx/1.22.1"}, {"origin server evil\"\n{x}", "Server: evil"}};
  r.verdict.cause = "idle_timeout";
  ConfirmReport confirm;
  confirm.tried = true;
  confirm.settled = "idle_timeout";
  r.confirm = confirm;
  const std::string text = net::probe_metrics_text(p);
  CHECK(has(text, "probe_success 0\n"));
  CHECK(has(text, "probe_duration_seconds 1.25\n"));
  CHECK(has(text, "probe_websocket_duration_seconds{phase=\"resolve\"} 0.0005"));
  CHECK(has(text, "probe_websocket_duration_seconds{phase=\"connect\"} 0.001"));
  CHECK(has(text, "probe_websocket_duration_seconds{phase=\"upgrade\"} 0.002"));
  CHECK(has(text, "probe_websocket_duration_seconds{phase=\"first_message\"} 0.5\n"));
  CHECK_FALSE(has(text, "phase=\"tls\""));
  CHECK(has(text, "probe_websocket_status_code 101\n"));
  CHECK(has(text, "probe_websocket_close_code 1006\n"));
  CHECK(has(text, "probe_websocket_close_initiator{by=\"server\"} 1\n"));
  CHECK(has(text, "probe_websocket_close_initiator{by=\"client\"} 0\n"));
  CHECK(has(text, "probe_websocket_tcp_end{how=\"fin\"} 1\n"));
  CHECK(has(text, "probe_websocket_tcp_end{how=\"none\"} 0\n"));
  CHECK(has(text, "probe_websocket_messages_received 3\n"));
  CHECK(has(text, "probe_websocket_cause_info{cause=\"idle_timeout\",confirmed=\"true\"} 1\n"));
  CHECK(has(text, "probe_websocket_intermediary_info{name=\"nginx\"} 1\n"));
  // The origin server's own header text never becomes a label value.
  CHECK_FALSE(has(text, "evil"));
  CHECK_FALSE(has(text, "probe_ssl_earliest_cert_expiry"));
  CHECK_FALSE(has(text, "probe_websocket_ping_rtt_seconds"));
}

TEST_CASE("a healthy probe succeeds unless the module's expect fails", "[probe][exporter]") {
  net::ModuleProbe p;
  p.result.verdict.cause = "healthy";
  CHECK(p.success());
  p.expect_used = true;
  p.expect_ok = false;
  CHECK_FALSE(p.success());
  const std::string text = net::probe_metrics_text(p);
  CHECK(has(text, "probe_websocket_expect_ok 0\n"));
  CHECK(has(text, "confirmed=\"false\""));
}

TEST_CASE("/metrics exports each watch's figures", "[probe][exporter]") {
  net::ExporterCounters c;
  c.probes[{"default", "true"}] = 2;
  c.requests["403"] = 1;
  net::WatchSnapshot w;
  w.target = "ws://127.0.0.1:1/ws?token=…";
  w.up = true;
  w.connected_s = 4;
  w.messages = 7;
  w.disconnects["idle_timeout"] = 3;
  w.pings = true;
  w.rtt_buckets[0] = 1;
  w.rtt_buckets[3] = 2;
  w.rtt_count = 3;
  w.rtt_sum_s = 0.02;
  const std::string text = net::exporter_metrics_text(c, {w});
  const std::string t = "target=\"ws://127.0.0.1:1/ws?token=…\"";
  CHECK(has(text, "ws_probe_exporter_probes_total{module=\"default\",success=\"true\"} 2\n"));
  CHECK(has(text, "ws_probe_exporter_requests_total{code=\"403\"} 1\n"));
  CHECK(has(text, "ws_probe_up{" + t + "} 1\n"));
  CHECK(has(text, "ws_probe_connected_seconds{" + t + "} 4\n"));
  CHECK(has(text, "ws_probe_disconnects_total{" + t + ",cause=\"idle_timeout\"} 3\n"));
  CHECK(has(text, "ws_probe_messages_total{" + t + "} 7\n"));
  CHECK(has(text, "ws_probe_ping_rtt_seconds_bucket{" + t + ",le=\"0.001\"} 1\n"));
  CHECK(has(text, "ws_probe_ping_rtt_seconds_bucket{" + t + ",le=\"0.01\"} 3\n"));  // cumulative
  CHECK(has(text, "ws_probe_ping_rtt_seconds_bucket{" + t + ",le=\"+Inf\"} 3\n"));
  CHECK(has(text, "ws_probe_ping_rtt_seconds_count{" + t + "} 3\n"));
  CHECK(has(text, "# TYPE ws_probe_ping_rtt_seconds histogram\n"));
  CHECK_FALSE(has(text, "ws_probe_last_message_age_seconds{"));  // no message yet
  w.pings = false;  // a watch that sends no pings has no RTT histogram
  CHECK_FALSE(has(net::exporter_metrics_text(c, {w}), "ws_probe_ping_rtt_seconds"));
}

TEST_CASE("the watch's backoff doubles from 0.5 s to 30 s on quick failures and restarts after a good one",
          "[probe][exporter]") {
  net::Backoff b;
  CHECK(b.delay_after(-1) == 0.5);
  CHECK(b.delay_after(-1) == 1.0);
  CHECK(b.delay_after(0.2) == 2.0);
  for (int i = 0; i < 10; ++i) b.delay_after(-1);
  CHECK(b.delay_after(-1) == 30.0);
  CHECK(b.delay_after(1.0) == 0.5);  // stayed open 1 s
  CHECK(b.delay_after(-1) == 1.0);
}
