// SPDX-License-Identifier: Apache-2.0
// ws-probe's reports (smws/net/probe_report.h): the --json contract, the
// timeline strip, the confirming trial and the idle-timeout search as the
// user reads them.
#include <catch2/catch.hpp>

#include "smws/exit_code.h"
#include "smws/net/probe_report.h"

using namespace smws;
using net::FrameEvent;
using net::ProbeResult;

namespace {

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// An open connection: handshake done at 10 ms, a greeting at 50 ms, a FIN
// after `end` seconds; verdict decided.
ProbeResult dropped_after_greeting(double end) {
  ProbeResult r;
  r.handshake.outcome = net::HandshakeInfo::Outcome::kOpen;
  r.handshake.status = 101;
  r.handshake.connect_ms = 0.2;
  r.handshake.handshake_ms = 0.8;
  auto& e = r.evidence;
  e.url = "ws://127.0.0.1:9/ws";
  e.handshake_done_s = 0.01;
  e.messages_in = 1;
  e.first_message_s = e.last_message_s = e.last_frame_in_s = 0.05;
  e.ending = Ending::kDropped;
  e.close_by = CloseBy::kServer;
  e.close_code = 1006;
  e.tcp_end = TcpEnd::kFin;
  e.end_s = end;
  r.frames.push_back({0.05, true, ws::Opcode::kText, 57, "hello"});
  r.frames_total = 1;
  r.verdict = decide(e);
  return r;
}

std::string strip_bar(const std::string& text) {
  auto at = text.find("timeline");
  REQUIRE(at != std::string::npos);
  auto open = text.find('|', at);
  auto close = text.find('|', open + 1);
  return text.substr(open + 1, close - open - 1);
}

}  // namespace

TEST_CASE("the human report ends with a timeline strip: greeting, silence, FIN", "[probe][report]") {
  auto r = dropped_after_greeting(4.01);
  const std::string text = net::report_text(r, r.evidence.url, 0);
  const std::string bar = strip_bar(text);
  CHECK(bar.size() == net::kTimelineColumns);
  CHECK(bar.front() == 'M');
  CHECK(bar.back() == 'F');
  CHECK(bar.find_first_not_of('.', 1) == bar.size() - 1);  // nothing between the greeting and the end
  CHECK(text.rfind("timeline") > text.find("verdict:"));    // at the end of the report
  CHECK(mentions(text, "legend"));
}

TEST_CASE("the timeline marks pings, messages out, an RST and a connection still open", "[probe][report]") {
  ProbeResult r = dropped_after_greeting(3.01);
  r.frames.push_back({1.5, false, ws::Opcode::kText, 10, ""});
  r.frames.push_back({2.0, true, ws::Opcode::kPing, 4, ""});
  r.frames_total = 3;
  r.evidence.tcp_end = TcpEnd::kRst;
  std::string bar = strip_bar(net::timeline_strip(r));
  CHECK(bar.find('>') != std::string::npos);
  CHECK(bar.find('p') != std::string::npos);
  CHECK(bar.find('>') < bar.find('p'));
  CHECK(bar.back() == 'R');

  r.evidence.ending = Ending::kStillOpen;
  CHECK(strip_bar(net::timeline_strip(r)).back() == '=');
}

TEST_CASE("close.by is server for a drop, and confirm is null when one cause fits", "[probe][report]") {
  auto r = dropped_after_greeting(0.6);  // 0.55 s of silence: a waiting server, no trial
  auto j = net::report_json(r, r.evidence.url);
  CHECK(j["close"]["by"] == "server");
  CHECK(j["close"]["tcp_end"] == "fin");
  CHECK(j["close"]["code"] == 1006);
  CHECK(j["confirm"].is_null());
  CHECK(j["verdict"]["cause"] == "server_waits_for_client");
  CHECK(j["verdict"]["candidates"].empty());
  CHECK(j["inflated"] == false);
}

TEST_CASE("with --no-confirm the report names both candidates and the trial it skipped", "[probe][report]") {
  auto r = dropped_after_greeting(4.01);
  auto plan = plan_confirm(r.evidence);
  REQUIRE(plan);
  ConfirmReport skipped;
  skipped.plan = *plan;  // tried = false, as with --no-confirm
  r.confirm = skipped;
  auto j = net::report_json(r, r.evidence.url);
  CHECK(j["confirm"]["tried"] == false);
  CHECK(j["confirm"]["skipped"] == "--no-confirm");
  CHECK(j["confirm"]["command"] == "ws-probe --ping 0.5 --duration 5.0 ws://127.0.0.1:9/ws");
  CHECK(j["verdict"]["candidates"].dump() == R"(["server_waits_for_client","idle_timeout"])");
  CHECK(mentions(net::report_text(r, r.evidence.url, 0), "(or idle_timeout: unconfirmed)"));
}

TEST_CASE("a tried confirmation is in the JSON and on a confirm line", "[probe][report]") {
  auto r = dropped_after_greeting(4.01);
  auto plan = *plan_confirm(r.evidence);
  ProbeEvidence trial;
  trial.handshake_done_s = 0.01;
  trial.ending = Ending::kStillOpen;
  trial.close_by = CloseBy::kClient;
  trial.end_s = 0.01 + plan.hold_s;
  trial.pings_sent = trial.pongs_received = 10;
  ConfirmReport report;
  r.verdict = settle(r.evidence, plan, trial, &report);
  r.confirm = report;
  auto j = net::report_json(r, r.evidence.url);
  CHECK(j["confirm"]["tried"] == true);
  CHECK(j["confirm"]["outcome"] == "outlived");
  CHECK(j["confirm"]["settled"] == "idle_timeout");
  CHECK(j["confirm"]["trial_pongs_received"] == 10);
  CHECK(j["verdict"]["cause"] == "idle_timeout");
  CHECK(mentions(net::report_text(r, r.evidence.url, 0), "confirm      a 2nd connection pinging every 0.50 s"));
}

TEST_CASE("the idle search report states the bracket, its precision and the trial count", "[probe][report]") {
  net::IdleSearchRun run;
  run.max_s = 5;
  run.search = IdleSearch(5);
  run.intermediaries = {{"nginx", "Server: nginx/1.22.1"}};
  run.search.record(false, 2.0);
  run.trials.push_back({5, false, 2.0, 1006, TcpEnd::kFin, "server_waits_for_client"});
  run.search.record(true, 1.9);
  run.trials.push_back({1.9, true, 1.9, 1000, TcpEnd::kNone, "healthy"});
  auto v = net::idle_search_verdict(run);
  CHECK(v.cause == "idle_timeout");
  CHECK(v.exit_code == kExitNegative);
  CHECK(mentions(v.text, "known to 0.10 s after 2 trials"));
  CHECK(mentions(v.text, "nginx's proxy_read_timeout"));
  auto j = net::idle_search_json(run, "ws://x/");
  CHECK(j["find_idle_timeout"]["trial_count"] == 2);
  CHECK(j["find_idle_timeout"]["precision_s"] == Approx(0.1));
  CHECK(j["find_idle_timeout"]["idle_timeout_s"] == Approx(2.0));
  CHECK(mentions(net::idle_search_text(run, "ws://x/"), "precision 0.10 s, 2 trials"));
}

TEST_CASE("an idle search that survives MAX is healthy and says so", "[probe][report]") {
  net::IdleSearchRun run;
  run.max_s = 0.8;
  run.search = IdleSearch(0.8);
  run.search.record(true, 0.79);
  run.trials.push_back({0.8, true, 0.79, 1000, TcpEnd::kNone, "healthy"});
  auto v = net::idle_search_verdict(run);
  CHECK(v.cause == "healthy");
  CHECK(v.exit_code == kExitOk);
  CHECK(net::idle_search_json(run, "ws://x/")["find_idle_timeout"]["idle_timeout_s"].is_null());
}

TEST_CASE("several connections summarise to the most frequent unhealthy cause", "[probe][report]") {
  std::vector<ProbeResult> results;
  results.push_back(dropped_after_greeting(0.6));
  results.push_back(dropped_after_greeting(0.6));
  ProbeResult healthy = dropped_after_greeting(0.6);
  healthy.evidence.ending = Ending::kStillOpen;
  healthy.evidence.close_by = CloseBy::kClient;
  healthy.evidence.close_code = 1000;
  healthy.evidence.tcp_end = TcpEnd::kNone;
  healthy.verdict = decide(healthy.evidence);
  results.push_back(healthy);
  auto s = net::summarise(results);
  CHECK(s.cause == "server_waits_for_client");
  CHECK(s.exit_code == kExitNegative);
  CHECK(s.causes.at("healthy") == 1);
  CHECK(s.tcp_end.at("fin") == 2);
  auto j = net::summary_json(s, results, {"ws://x/", 3, 1});
  CHECK(j["total"] == 3);
  CHECK(j["results"].size() == 3);
}

TEST_CASE("resets at the same age on every connection are called a timer, not a crash", "[probe][report]") {
  std::vector<ProbeResult> results;
  for (double end : {5.0, 5.2, 5.1}) {
    ProbeResult r = dropped_after_greeting(end);
    r.evidence.tcp_end = TcpEnd::kRst;
    r.evidence.last_frame_in_s = end - 0.1;  // traffic until just before: connection_reset
    r.evidence.last_message_s = end - 0.1;
    r.verdict = decide(r.evidence);
    REQUIRE(r.verdict.cause == "connection_reset");
    results.push_back(r);
  }
  auto s = net::summarise(results);
  REQUIRE(s.findings.size() == 1);
  CHECK(mentions(s.findings[0], "same age"));
  CHECK(mentions(s.findings[0], "timer"));

  results[1] = dropped_after_greeting(9.0);  // one much later: chance, no finding
  results[1].evidence.tcp_end = TcpEnd::kRst;
  results[1].evidence.last_frame_in_s = results[1].evidence.last_message_s = 8.9;
  results[1].verdict = decide(results[1].evidence);
  CHECK(net::summarise(results).findings.empty());
}
