// SPDX-License-Identifier: Apache-2.0
// ws-probe's verdict rules (smws/probe_verdict.h), one case per rule and
// threshold of docs/troubleshooting-1006.md.
#include <catch2/catch.hpp>

#include "smws/exit_code.h"
#include "smws/probe_verdict.h"

using namespace smws;

namespace {

// An open connection: handshake done at 10 ms, nothing else yet.
ProbeEvidence open_connection() {
  ProbeEvidence e;
  e.handshake_done_s = 0.01;
  e.duration_s = 30;
  return e;
}

void receive(ProbeEvidence& e, double t) {
  ++e.messages_in;
  if (!e.first_message_s) e.first_message_s = t;
  e.last_message_s = t;
  e.last_frame_in_s = t;
}

void drop(ProbeEvidence& e, double t, TcpEnd end) {
  e.ending = Ending::kDropped;
  e.close_by = CloseBy::kServer;
  e.close_code = 1006;
  e.tcp_end = end;
  e.end_s = t;
}

void server_close(ProbeEvidence& e, double t, uint16_t code, std::string reason) {
  e.ending = Ending::kServerClose;
  e.close_by = CloseBy::kServer;
  e.close_code = code;
  e.close_reason = std::move(reason);
  e.end_s = t;
}

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a connection open for the whole duration is healthy and exits 0", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  receive(e, 12.0);
  e.ending = Ending::kStillOpen;
  e.close_by = CloseBy::kClient;
  e.close_code = 1000;
  e.end_s = 30.01;
  auto v = decide(e);
  CHECK(v.cause == "healthy");
  CHECK(v.exit_code == smws::kExitOk);
}

TEST_CASE("a quiet server is healthy, with a note about keepalives", "[probe]") {
  auto e = open_connection();
  e.ending = Ending::kStillOpen;
  e.end_s = 30.01;
  auto v = decide(e);
  CHECK(v.cause == "healthy");
  REQUIRE(v.findings.size() == 1);
  CHECK(mentions(v.findings[0], "ping"));
}

TEST_CASE("dropped right after the greeting while the probe is silent: server waits for client", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  drop(e, 0.55, TcpEnd::kFin);
  auto v = decide(e);
  CHECK(v.cause == "server_waits_for_client");
  CHECK(v.exit_code == smws::kExitNegative);
  CHECK(mentions(v.text, "FIN"));
}

TEST_CASE("a reset right after the greeting is a reset, not a waiting server", "[probe]") {
  // Regression: the greeting-window rule used to win over the RST. A server
  // that gives up on a silent client closes its socket (FIN); an RST is a
  // crash or an abort whatever the timing of the messages before it.
  auto e = open_connection();
  receive(e, 0.05);
  drop(e, 0.4, TcpEnd::kRst);
  CHECK(decide(e).cause == "connection_reset");
  CHECK_FALSE(plan_confirm(e));
}

TEST_CASE("data arriving after the first second rules out server_waits_for_client", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  receive(e, 1.2);  // 1.19 s after the handshake: beyond the greeting window
  drop(e, 1.5, TcpEnd::kFin);
  auto v = decide(e);
  CHECK(v.cause == "server_closed");  // FIN, 0.3 s of silence: not idle either
}

TEST_CASE("when the probe spoke, an early drop is not server_waits_for_client", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  e.messages_out = 1;
  e.last_frame_out_s = 0.02;
  drop(e, 0.3, TcpEnd::kFin);
  CHECK(decide(e).cause == "server_closed");
}

TEST_CASE("a drop after >= 1 s of silence following spread traffic is an idle timeout", "[probe]") {
  auto e = open_connection();
  receive(e, 0.0);
  receive(e, 0.6);
  receive(e, 1.2);
  drop(e, 2.7, TcpEnd::kFin);
  auto v = decide(e);
  CHECK(v.cause == "idle_timeout");
  CHECK(mentions(v.text, "1.50 s"));
  CHECK(mentions(v.text, "matches no well-known default"));
  CHECK(mentions(v.text, "no ping"));
}

TEST_CASE("0.9 s of silence is below the idle threshold", "[probe]") {
  auto e = open_connection();
  receive(e, 0.6);
  receive(e, 1.5);
  drop(e, 2.4, TcpEnd::kRst);
  CHECK(decide(e).cause == "connection_reset");
}

TEST_CASE("an idle drop at 60 s names nginx and AWS ALB", "[probe]") {
  auto e = open_connection();
  receive(e, 5.0);
  e.last_frame_in_s = 5.0;
  drop(e, 65.2, TcpEnd::kFin);
  auto v = decide(e);
  CHECK(v.cause == "idle_timeout");
  CHECK(mentions(v.text, "nginx"));
  CHECK(mentions(v.text, "AWS ALB"));
}

TEST_CASE("greeting only, then a drop at a known proxy default, is an idle timeout, not a waiting server", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  drop(e, 100.3, TcpEnd::kFin);
  auto v = decide(e);
  CHECK(v.cause == "idle_timeout");
  CHECK(mentions(v.text, "Cloudflare"));
}

TEST_CASE("pings the probe did not answer, then a close, is a ping timeout", "[probe]") {
  auto e = open_connection();
  e.answers_pings = false;
  e.pings_received = 2;
  e.first_unanswered_ping_s = 0.3;
  e.last_frame_in_s = 0.6;
  server_close(e, 0.9, 1008, "ping timeout");
  auto v = decide(e);
  CHECK(v.cause == "ping_timeout");
  CHECK(v.exit_code == smws::kExitNegative);
  CHECK(mentions(v.text, "0.60 s after the first unanswered ping"));
}

TEST_CASE("unanswered pings followed by a silent drop are a ping timeout too", "[probe]") {
  auto e = open_connection();
  e.answers_pings = false;
  e.pings_received = 1;
  e.first_unanswered_ping_s = 5;
  e.last_frame_in_s = 5;
  drop(e, 15, TcpEnd::kFin);
  CHECK(decide(e).cause == "ping_timeout");
}

TEST_CASE("unanswered application pings point to --app-pong", "[probe]") {
  auto e = open_connection();
  e.app_pings_received = 2;
  e.first_unanswered_app_ping_s = 0.3;
  receive(e, 0.6);
  server_close(e, 0.9, 1008, "no pong");
  auto v = decide(e);
  CHECK(v.cause == "ping_timeout");
  CHECK(mentions(v.text, "--app-pong"));
}

TEST_CASE("answered application pings are not a ping timeout", "[probe]") {
  auto e = open_connection();
  e.app_pong = true;
  e.app_pings_received = 2;
  e.app_pongs_sent = 2;
  e.messages_out = 2;
  receive(e, 0.6);
  server_close(e, 0.9, 1011, "");
  CHECK(decide(e).cause == "server_error");
}

TEST_CASE("a close reason naming a keepalive is a ping timeout even when pongs were sent", "[probe]") {
  auto e = open_connection();
  e.pings_received = 3;
  e.pings_answered = 3;
  server_close(e, 5, 1001, "Heartbeat timeout");
  CHECK(decide(e).cause == "ping_timeout");
}

TEST_CASE("close 1011 and 1014 are server errors, while 1008, 1013, 1000 are server closes", "[probe]") {
  for (uint16_t code : {1011, 1014}) {
    auto e = open_connection();
    server_close(e, 1, code, "");
    CHECK(decide(e).cause == "server_error");
  }
  for (uint16_t code : {1000, 1001, 1008, 1013, 4001}) {
    auto e = open_connection();
    server_close(e, 1, code, "");
    auto v = decide(e);
    CHECK(v.cause == "server_closed");
    CHECK(v.exit_code == smws::kExitNegative);
  }
  auto e = open_connection();
  server_close(e, 1, 1013, "try again later");
  CHECK(mentions(decide(e).text, "overloaded"));
}

TEST_CASE("with --cat, the server's 1000 after input ended is healthy", "[probe]") {
  auto e = open_connection();
  e.cat_mode = true;
  e.input_ended = true;
  e.messages_out = 2;
  server_close(e, 1, 1000, "");
  CHECK(decide(e).cause == "healthy");
  e.input_ended = false;
  CHECK(decide(e).cause == "server_closed");
}

TEST_CASE("the handshake outcomes map to the documented exit codes", "[probe]") {
  ProbeEvidence e;
  e.ending = Ending::kUnreachable;
  e.error = "Connection refused";
  auto v = decide(e);
  CHECK(v.cause == "unreachable");
  CHECK(v.exit_code == smws::kExitUnavailable);

  e.ending = Ending::kHandshakeTimeout;
  v = decide(e);
  CHECK(v.cause == "unreachable");
  CHECK(v.exit_code == smws::kExitTempFail);

  e.ending = Ending::kRefused;
  e.status = 403;
  v = decide(e);
  CHECK(v.cause == "handshake_refused");
  CHECK(v.exit_code == smws::kExitNegative);
  CHECK(mentions(v.text, "403"));

  e.status = 200;
  CHECK(mentions(decide(e).text, "Upgrade"));
}

TEST_CASE("a protocol violation by the server is a server error", "[probe]") {
  auto e = open_connection();
  e.ending = Ending::kProtocolError;
  e.protocol_error = "RSV1 set without a negotiated extension";
  e.close_code = 1002;
  e.close_by = CloseBy::kClient;
  e.end_s = 0.2;
  auto v = decide(e);
  CHECK(v.cause == "server_error");
  CHECK(mentions(v.text, "RSV1"));
}

TEST_CASE("lag analysis ignores the clock offset and finds the burst", "[probe]") {
  std::vector<StampedArrival> arrivals;
  const double offset = 1234.5;  // the server's clock is 20 minutes off
  for (int i = 0; i < 5; ++i) arrivals.push_back({0.1 * i, offset + 0.002});
  // Stamped during a 1.5 s stall, all sent at +2.0 s.
  for (int i = 0; i < 10; ++i) arrivals.push_back({2.0, offset + 0.002 + 1.5 - 0.1 * i});
  auto stats = analyze_lags(arrivals);
  CHECK(stats.stamped == 15);
  CHECK(stats.min_lag_s == Approx(offset + 0.002));
  CHECK(stats.worst_excess_s == Approx(1.5));
  CHECK(stats.worst_at_s == Approx(2.0));
  CHECK(stats.late == 5);  // excess 1.5, 1.4, 1.3, 1.2, 1.1
  CHECK(stats.stalled());

  std::vector<StampedArrival> steady;
  for (int i = 0; i < 10; ++i) steady.push_back({0.1 * i, -50.0 + 0.01 * (i % 3)});
  CHECK_FALSE(analyze_lags(steady).stalled());
  CHECK_FALSE(analyze_lags({}).stalled());
}

TEST_CASE("messages stamped before the connection existed are not a stall", "[probe]") {
  // ws-relay's --history replay at connect, then a producer forwarding a
  // two-year-old event in the middle of the live stream.
  std::vector<StampedArrival> arrivals = {{0.02, 30.0}, {0.02, 20.0}, {0.03, 0.01}, {1.0, 0.01},
                                          {2.0, 6.3e7}, {3.0, 0.02}};
  auto stats = analyze_lags(arrivals);
  CHECK(stats.ignored == 3);
  CHECK(stats.worst_excess_s == Approx(0.01));
  CHECK_FALSE(stats.stalled());
}

TEST_CASE("a stalled sender on an otherwise open connection is stalled_server, exit 1", "[probe]") {
  auto e = open_connection();
  receive(e, 3.0);
  e.ending = Ending::kStillOpen;
  e.end_s = 3.5;
  e.longest_gap_s = 1.6;
  e.longest_gap_at_s = 2.0;
  e.lags = analyze_lags({{0.1, 0.0}, {2.0, 1.5}});
  auto v = decide(e);
  CHECK(v.cause == "stalled_server");
  CHECK(v.exit_code == smws::kExitNegative);
  CHECK(mentions(v.text, "1.60 s"));
  CHECK(mentions(v.text, "1.50 s"));
}

TEST_CASE("a stall on a connection that then dropped is a finding, the drop is the cause", "[probe]") {
  auto e = open_connection();
  receive(e, 0.2);
  receive(e, 2.0);
  drop(e, 2.1, TcpEnd::kRst);
  e.lags = analyze_lags({{0.2, 0.0}, {2.0, 1.5}});
  auto v = decide(e);
  CHECK(v.cause == "connection_reset");
  REQUIRE_FALSE(v.findings.empty());
  CHECK(mentions(v.findings[0], "stalled"));
}

TEST_CASE("an unoffered permessage-deflate fails the handshake and the verdict names it", "[probe]") {
  // SPEC, Hostile input at the edges (this case used to accept it with a finding).
  ProbeEvidence e;
  e.ending = Ending::kRefused;
  e.status = 101;
  e.extensions = "permessage-deflate";
  e.error = "the server's 101 names 'Sec-WebSocket-Extensions: permessage-deflate', which the client did not offer";
  auto v = decide(e);
  CHECK(v.cause == "handshake_refused");
  CHECK(v.exit_code == 1);
  CHECK(mentions(v.text, "permessage-deflate"));
  CHECK(mentions(v.text, "offered no extension"));
}

TEST_CASE("an offered permessage-deflate that the server accepted is a finding", "[probe]") {
  auto e = open_connection();
  e.extensions = "permessage-deflate";
  e.deflate_offered = true;
  e.inflated = true;
  e.ending = Ending::kStillOpen;
  e.end_s = 1;
  auto v = decide(e);
  CHECK(v.cause == "healthy");
  REQUIRE_FALSE(v.findings.empty());
  CHECK(mentions(v.findings[0], "permessage-deflate"));
}

TEST_CASE("idle defaults match within max(1 s, 5%)", "[probe]") {
  auto names = [](double s) {
    std::string out;
    for (const auto& m : match_idle_default(s)) out += std::string(m.name) + "|";
    return out;
  };
  CHECK(mentions(names(60), "nginx"));
  CHECK(mentions(names(60), "AWS ALB"));
  CHECK(mentions(names(57.1), "nginx"));       // 60 - 5%
  CHECK_FALSE(mentions(names(56.9), "nginx"));
  CHECK(mentions(names(55), "Heroku"));
  CHECK(mentions(names(100), "Cloudflare"));
  CHECK(mentions(names(350), "NLB"));
  CHECK(names(1.5).empty());
  CHECK(names(20).empty());
  CHECK(mentions(describe_idle_matches(match_idle_default(60)), " or "));
}

TEST_CASE("fingerprints name proxies and CDNs once each", "[probe]") {
  auto found = fingerprint({{"Server", "cloudflare"},
                            {"CF-RAY", "8a1b2c3d4e5f-FRA"},
                            {"Via", "1.1 abc.cloudfront.net (CloudFront)"},
                            {"X-Amz-Cf-Id", "xyz"},
                            {"Via", "1.1 vegur"},
                            {"x-served-by", "cache-fra-1234"}});
  std::vector<std::string> names;
  for (const auto& i : found) names.push_back(i.name);
  CHECK(names == std::vector<std::string>{"Cloudflare", "Amazon CloudFront", "Heroku router", "Fastly"});
  CHECK(found[0].evidence == "Server: cloudflare");

  auto nginx = fingerprint({{"server", "nginx/1.24.0"}, {"Content-Type", "text/plain"}});
  REQUIRE(nginx.size() == 1);
  CHECK(nginx[0].name == "nginx");
  CHECK(fingerprint({{"Upgrade", "websocket"}}).empty());
}

TEST_CASE("close codes are explained in words", "[probe]") {
  CHECK(mentions(explain_close_code(1011), "internal error"));
  CHECK(mentions(explain_close_code(1013), "try again later"));
  CHECK(mentions(explain_close_code(1008), "policy"));
  CHECK(mentions(explain_close_code(4001), "application-defined"));
  CHECK(mentions(explain_close_code(3000), "library"));
}

TEST_CASE("a server that tolerates unanswered pings stays healthy, with a note", "[probe]") {
  auto e = open_connection();
  e.answers_pings = false;
  e.pings_received = 4;
  e.first_unanswered_ping_s = 0.3;
  e.ending = Ending::kStillOpen;
  e.end_s = 3;
  auto v = decide(e);
  CHECK(v.cause == "healthy");
  REQUIRE(v.findings.size() == 1);
  CHECK(mentions(v.findings[0], "does not enforce"));
}

// --- the confirming trial and intermediaries as evidence --------------------

namespace {

// Greeting at 50 ms, then a FIN after `silence` seconds of nothing.
ProbeEvidence greeting_then_drop(double silence) {
  auto e = open_connection();
  e.url = "ws://127.0.0.1:9/ws";
  receive(e, 0.05);
  drop(e, 0.05 + silence, TcpEnd::kFin);
  return e;
}

ProbeEvidence trial_open_for(double hold) {
  auto e = open_connection();
  e.pings_sent = static_cast<size_t>(hold / kConfirmPingInterval);
  e.pongs_received = e.pings_sent;
  e.ending = Ending::kStillOpen;
  e.close_by = CloseBy::kClient;
  e.close_code = 1000;
  e.end_s = e.handshake_done_s + hold;
  return e;
}

}  // namespace

TEST_CASE("greeting, then a FIN after silence matching no default, fits two causes and plans a trial", "[probe]") {
  auto e = greeting_then_drop(4.0);
  auto plan = plan_confirm(e);
  REQUIRE(plan);
  CHECK(plan->candidates == std::vector<std::string>{"server_waits_for_client", "idle_timeout"});
  CHECK(plan->first_age_s == Approx(4.04));
  CHECK(plan->hold_s == Approx(4.04 + 1.01));  // a quarter of the age beyond it, at least 1 s
  CHECK(plan->ping_every_s == 0.5);
  CHECK(plan->command == "ws-probe --ping 0.5 --duration 5.1 ws://127.0.0.1:9/ws");
}

TEST_CASE("without the trial, the verdict names both candidates and the command that separates them", "[probe]") {
  auto v = decide(greeting_then_drop(4.0));
  CHECK(v.cause == "server_waits_for_client");  // no proxy named: the application is the likelier
  CHECK(v.candidates == std::vector<std::string>{"server_waits_for_client", "idle_timeout"});
  CHECK(v.exit_code == smws::kExitNegative);
  CHECK(mentions(v.text, "ws-probe --ping 0.5 --duration 5.1 ws://127.0.0.1:9/ws"));
  CHECK(mentions(v.text, "idle timeout of about 4.00 s"));
}

TEST_CASE("with a proxy named in the headers, the unconfirmed verdict leans to its idle timeout", "[probe]") {
  auto e = greeting_then_drop(4.0);
  e.intermediaries = {{"nginx", "Server: nginx/1.22.1"}};
  auto v = decide(e);
  CHECK(v.cause == "idle_timeout");
  CHECK(v.candidates == std::vector<std::string>{"idle_timeout", "server_waits_for_client"});
  CHECK(mentions(v.text, "proxy_read_timeout"));
}

TEST_CASE("a trial that outlives the first connection's drop settles on idle_timeout with the bound", "[probe]") {
  auto first = greeting_then_drop(4.0);
  first.intermediaries = {{"nginx", "Server: nginx/1.22.1"}};
  auto plan = *plan_confirm(first);
  ConfirmReport report;
  auto v = settle(first, plan, trial_open_for(plan.hold_s), &report);
  CHECK(v.cause == "idle_timeout");
  CHECK(v.candidates.empty());
  CHECK(report.tried);
  CHECK(report.outcome == "outlived");
  CHECK(report.settled == "idle_timeout");
  CHECK(mentions(v.text, "at most 4.00 s"));
  CHECK(mentions(v.text, "nginx's proxy_read_timeout"));
  CHECK(mentions(v.text, "set to about 4.00 s"));
}

TEST_CASE("a trial dropped at the same age despite pings settles on server_waits_for_client", "[probe]") {
  auto first = greeting_then_drop(1.5);
  auto plan = *plan_confirm(first);
  auto trial = open_connection();
  trial.pings_sent = 3;
  trial.pongs_received = 3;
  trial.last_frame_out_s = 1.51;
  trial.last_frame_in_s = 1.51;
  drop(trial, 1.62, TcpEnd::kFin);  // age 1.61 s against 1.54 s
  ConfirmReport report;
  auto v = settle(first, plan, trial, &report);
  CHECK(v.cause == "server_waits_for_client");
  CHECK(report.outcome == "same_age");
  CHECK(mentions(v.text, "same age"));
}

TEST_CASE("a trial that ends earlier or cannot connect settles nothing and keeps both candidates", "[probe]") {
  auto first = greeting_then_drop(4.0);
  auto plan = *plan_confirm(first);
  auto trial = open_connection();
  server_close(trial, 1.0, 1001, "restart");
  ConfirmReport report;
  auto v = settle(first, plan, trial, &report);
  CHECK(report.outcome == "earlier");
  CHECK(report.settled.empty());
  CHECK(v.candidates.size() == 2);

  ProbeEvidence refused;
  refused.ending = Ending::kRefused;
  refused.status = 503;
  ConfirmReport report2;
  v = settle(first, plan, refused, &report2);
  CHECK(report2.outcome == "no_connection");
  CHECK(v.candidates.size() == 2);
}

TEST_CASE("no trial where one cause fits: short silence, spread traffic, a known default, a reset, a speaking probe", "[probe]") {
  CHECK_FALSE(plan_confirm(greeting_then_drop(0.5)));     // server_waits_for_client outright
  CHECK_FALSE(plan_confirm(greeting_then_drop(60.0)));    // matches nginx/ALB: idle_timeout
  auto rst = greeting_then_drop(4.0);
  rst.tcp_end = TcpEnd::kRst;
  CHECK_FALSE(plan_confirm(rst));
  CHECK(decide(rst).cause == "idle_timeout");              // RST after >= 1 s of silence
  auto spoke = greeting_then_drop(4.0);
  spoke.messages_out = 1;
  spoke.last_frame_out_s = 0.02;
  CHECK_FALSE(plan_confirm(spoke));
  CHECK(decide(spoke).cause == "idle_timeout");
  auto spread = open_connection();
  receive(spread, 0.05);
  receive(spread, 1.5);
  drop(spread, 5.5, TcpEnd::kFin);
  CHECK_FALSE(plan_confirm(spread));
  CHECK(decide(spread).cause == "idle_timeout");
}

TEST_CASE("an idle drop matching no default names the proxy in between and its setting", "[probe]") {
  auto e = open_connection();
  receive(e, 0.0);
  receive(e, 1.5);
  drop(e, 5.5, TcpEnd::kFin);
  e.intermediaries = {{"origin server ws-relay", "Server: ws-relay"}, {"HAProxy", "Server: haproxy"}};
  auto v = decide(e);
  CHECK(v.cause == "idle_timeout");
  CHECK(mentions(v.text, "HAProxy (Server: haproxy) stands in between"));
  CHECK(mentions(v.text, "timeout tunnel"));
  CHECK_FALSE(mentions(v.text, "ws-relay"));  // the application itself is not in between
}

TEST_CASE("the application server's own Server header is not an intermediary", "[probe]") {
  CHECK_FALSE(is_in_between({"origin server uvicorn", "Server: uvicorn"}));
  CHECK(is_in_between({"nginx", "Server: nginx"}));
  CHECK(mentions(idle_setting_of({"OpenResty (nginx)", "Server: openresty"}), "proxy_read_timeout"));
  CHECK(idle_setting_of({"a proxy (Via)", "Via: 1.1 x"}).empty());
}

TEST_CASE("a reset after data inside the greeting window, under 1 s of silence, is connection_reset", "[probe]") {
  auto e = open_connection();
  receive(e, 0.05);
  receive(e, 0.3);
  drop(e, 0.5, TcpEnd::kRst);
  auto v = decide(e);
  CHECK(v.cause == "connection_reset");
  CHECK(v.candidates.empty());
}
