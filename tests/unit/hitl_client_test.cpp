// SPDX-License-Identifier: Apache-2.0
// hitl-approve's approval queue (smws/hitl_client.h), driven with messages
// as the relay sends them and a `now` the test chooses.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "smws/hitl_client.h"

using nlohmann::json;
using smws::HitlClient;
using smws::HitlEffect;
using Kind = smws::HitlEffect::Kind;

namespace {

constexpr const char* kUs = "127.0.0.1:40000";

json interrupt(const std::string& id, const std::string& action = "deploy", double timeout = 300) {
  return {{"type", "interrupt"},
          {"interrupt_id", id},
          {"thread_id", "t-" + id},
          {"action_requests", {{{"name", action}, {"args", {{"env", "prod"}}}}}},
          {"timeout", timeout}};
}

json snapshot(std::vector<json> pending) {
  json list = json::array();
  for (auto& p : pending) list.push_back(std::move(p));
  return {{"type", "initial"}, {"machines", json::array()}, {"pending", list}};
}

json broadcast(const json& sent, const std::string& client) {
  json decision = sent;
  decision["client"] = client;
  return decision;
}

HitlClient connected(smws::HitlClientOptions options = {}) {
  if (options.decided_by.empty()) options.decided_by = "alice@host";
  HitlClient client(options);
  client.on_connected(kUs);
  return client;
}

std::vector<HitlEffect> of_kind(const std::vector<HitlEffect>& effects, Kind kind) {
  std::vector<HitlEffect> out;
  for (const auto& e : effects)
    if (e.kind == kind) out.push_back(e);
  return out;
}

std::vector<json> sends(const std::vector<HitlEffect>& effects) {
  std::vector<json> out;
  for (const auto& e : of_kind(effects, Kind::kSend)) out.push_back(e.message);
  return out;
}

}  // namespace

TEST_CASE("hitl client: the snapshot's interrupts are queued in order and later ones are live", "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1"), interrupt("i-2")}), 0);
  auto effects = client.take_effects();
  auto queued = of_kind(effects, Kind::kQueued);
  REQUIRE(queued.size() == 2);
  CHECK(queued[0].id == "i-1");
  CHECK_FALSE(queued[0].live);
  CHECK(effects.back().kind == Kind::kSnapshot);

  client.on_message(interrupt("i-3", "notify"), 1);
  queued = of_kind(client.take_effects(), Kind::kQueued);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].live);
  CHECK(queued[0].names == "notify");

  std::size_t skipped = 9;
  CHECK(client.next_to_ask(&skipped) == std::optional<std::string>("i-1"));
  CHECK(skipped == 0);
  CHECK(client.waiting_count() == 3);
}

TEST_CASE("hitl client: an interrupt seen twice (snapshot, then history) is queued once", "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1")}), 0);
  client.on_message(interrupt("i-1"), 1);
  CHECK(of_kind(client.take_effects(), Kind::kQueued).size() == 1);
  CHECK(client.pending_count() == 1);
}

TEST_CASE("hitl client: a snapshot's expires_in sets the deadline, else the interrupt's timeout", "[hitl-client]") {
  auto client = connected();
  json late = interrupt("i-1", "deploy", 300);
  late["expires_in"] = 12.5;
  client.on_message(snapshot({late, interrupt("i-2", "deploy", 60)}), 100);
  REQUIRE(client.find("i-1"));
  CHECK(client.find("i-1")->deadline == 112.5);
  CHECK_FALSE(client.find("i-1")->interrupt.contains("expires_in"));
  CHECK(client.find("i-2")->deadline == 160);
}

TEST_CASE("hitl client: an interrupt without well-formed action_requests is warned about and skipped",
          "[hitl-client]") {
  auto client = connected();
  json bad = interrupt("i-1");
  bad["action_requests"] = json::array({{{"args", json::object()}}});
  client.on_message(bad, 0);
  auto warnings = of_kind(client.take_effects(), Kind::kWarning);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].text.find("i-1") != std::string::npos);
  CHECK(client.pending_count() == 0);
}

TEST_CASE("hitl client: a decision made at the prompt is sent with thread_id and decided_by, "
          "and leaves the queue when the relay broadcasts it",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1")}), 0);
  client.take_effects();
  client.decide("i-1", json::array({{{"type", "approve"}}}));
  auto sent = sends(client.take_effects());
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["type"] == "decision");
  CHECK(sent[0]["thread_id"] == "t-i-1");
  CHECK(sent[0]["decided_by"] == "alice@host");
  CHECK_FALSE(client.next_to_ask(nullptr));  // sent: not asked again
  CHECK(client.awaiting());

  client.on_message(broadcast(sent[0], kUs), 1);
  auto accepted = of_kind(client.take_effects(), Kind::kAccepted);
  REQUIRE(accepted.size() == 1);
  CHECK(accepted[0].source == smws::HitlSource::kPrompt);
  CHECK(client.pending_count() == 0);
  CHECK_FALSE(client.awaiting());
}

TEST_CASE("hitl client: a decision from another client withdraws the request and says who decided",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1"), interrupt("i-2")}), 0);
  client.take_effects();
  json other = {{"type", "decision"}, {"interrupt_id", "i-1"}, {"decisions", {{{"type", "reject"}}}},
                {"decided_by", "bob"}, {"client", "127.0.0.1:50000"}};
  client.on_message(other, 1);
  json timeout = {{"type", "decision"}, {"interrupt_id", "i-2"}, {"timed_out", true}, {"client", "x"}};
  client.on_message(timeout, 2);
  auto withdrawn = of_kind(client.take_effects(), Kind::kWithdrawn);
  REQUIRE(withdrawn.size() == 2);
  CHECK(withdrawn[0].text == "reject by bob");
  CHECK(withdrawn[0].names == "deploy");
  CHECK(withdrawn[1].text == "timed out");
  CHECK(client.pending_count() == 0);
}

TEST_CASE("hitl client: is_ours goes by the client address when the relay gives one, else by decided_by",
          "[hitl-client]") {
  auto client = connected();
  CHECK(client.is_ours(json{{"client", kUs}, {"decided_by", "someone"}}));
  CHECK_FALSE(client.is_ours(json{{"client", "127.0.0.1:1"}, {"decided_by", "alice@host"}}));
  CHECK(client.is_ours(json{{"decided_by", "alice@host"}}));
  CHECK_FALSE(client.is_ours(json{{"decided_by", "bob"}}));
  client.on_disconnected();
  CHECK_FALSE(client.is_ours(json{{"client", kUs}}));
}

TEST_CASE("hitl client: --auto decides every matching request once and leaves the others to a human",
          "[hitl-client]") {
  smws::HitlClientOptions options;
  options.auto_decision = "approve";
  options.match = {"deploy*", "read_*"};
  auto client = connected(options);
  client.on_message(snapshot({interrupt("i-1", "deploy_web"), interrupt("i-2", "drop_table")}), 0);
  auto effects = client.take_effects();
  auto sent = sends(effects);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["interrupt_id"] == "i-1");
  CHECK(sent[0]["decisions"] == json::array({{{"type", "approve"}}}));
  auto queued = of_kind(effects, Kind::kQueued);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].id == "i-2");
  CHECK(client.next_to_ask(nullptr) == std::optional<std::string>("i-2"));
}

TEST_CASE("hitl client: --auto applies only when every action matches and allows the decision",
          "[hitl-client]") {
  smws::HitlClientOptions options;
  options.auto_decision = "approve";
  options.match = {"deploy"};
  HitlClient client(options);
  json both = interrupt("i-1");
  both["action_requests"].push_back({{"name", "notify"}, {"args", json::object()}});
  CHECK_FALSE(client.auto_applies(both));  // notify does not match
  json reject_only = interrupt("i-2");
  reject_only["review_configs"] = {{{"action_name", "deploy"}, {"allowed_decisions", {"reject"}}}};
  CHECK_FALSE(client.auto_applies(reject_only));
  CHECK(client.auto_applies(interrupt("i-3")));

  smws::HitlClientOptions reject_all;
  reject_all.auto_decision = "reject";
  HitlClient rejecter(reject_all);
  rejecter.on_connected(kUs);
  rejecter.on_message(snapshot({both}), 0);
  auto sent = sends(rejecter.take_effects());
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["decisions"].size() == 2);  // one entry per action
  CHECK(sent[0]["decisions"][0]["message"] == "rejected by hitl-approve --auto");
}

TEST_CASE("hitl client: after a reconnect the first snapshot sends again what is still pending "
          "and reports what was resolved meanwhile",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1"), interrupt("i-2")}), 0);
  client.decide("i-1", json::array({{{"type", "approve"}}}));
  client.decide("i-2", json::array({{{"type", "reject"}}}));
  client.take_effects();

  client.on_disconnected();
  client.on_connected("127.0.0.1:40001");
  client.on_message(snapshot({interrupt("i-1")}), 10);  // i-2 was resolved while we were away
  auto effects = client.take_effects();
  auto sent = sends(effects);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["interrupt_id"] == "i-1");
  auto lost = of_kind(effects, Kind::kLost);
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].id == "i-2");
  CHECK(of_kind(effects, Kind::kWithdrawn).size() == 1);  // i-2 left the queue

  // A second snapshot on the same connection (a refresh) sends nothing again.
  client.on_message(snapshot({interrupt("i-1")}), 11);
  CHECK(sends(client.take_effects()).empty());
}

TEST_CASE("hitl client: a refusal of our decision is reported and 'not pending' withdraws the request",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1"), interrupt("i-2")}), 0);
  client.decide("i-1", json::array({{{"type", "edit"}}}));
  client.decide("i-2", json::array({{{"type", "approve"}}}));
  client.take_effects();
  client.on_message(json{{"type", "error"}, {"interrupt_id", "i-1"}, {"error", "edit not allowed"}}, 1);
  client.on_message(json{{"type", "error"}, {"interrupt_id", "i-2"}, {"error", "not pending"},
                         {"reason", "timed out"}}, 1);
  auto effects = client.take_effects();
  auto refused = of_kind(effects, Kind::kRefused);
  REQUIRE(refused.size() == 2);
  CHECK(refused[0].text == "edit not allowed");
  CHECK(refused[1].text == "not pending (timed out)");
  CHECK(client.find("i-1"));  // still pending: it will be asked again
  CHECK(client.next_to_ask(nullptr) == std::optional<std::string>("i-1"));
  CHECK_FALSE(client.find("i-2"));

  client.on_message(json{{"type", "error"}, {"error", "bad message"}}, 2);
  auto warnings = of_kind(client.take_effects(), Kind::kWarning);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].text == "relay: bad message");
}

TEST_CASE("hitl client: gap and dropped ask the relay for a fresh snapshot", "[hitl-client]") {
  auto client = connected();
  client.on_message(json{{"type", "gap"}}, 0);
  client.on_message(json{{"type", "dropped"}, {"count", 3}}, 0);
  auto sent = sends(client.take_effects());
  REQUIRE(sent.size() == 2);
  CHECK(sent[0] == json{{"type", "refresh"}});
}

TEST_CASE("hitl client: a field of the wrong type makes a warning, not an exception", "[hitl-client]") {
  auto client = connected();
  client.on_message(json{{"type", "initial"}, {"pending", {{{"interrupt_id", "i-1"}, {"timeout", 5},
                                                            {"action_requests", {{{"name", 7}}}}}}}},
                    0);
  client.on_message(json{{"type", "decision"}, {"interrupt_id", "i-1"}, {"timed_out", "yes"}}, 0);
  CHECK_NOTHROW(client.take_effects());
  client.on_message(snapshot({interrupt("i-1")}), 0);
  client.take_effects();
  client.on_message(json{{"type", "decision"}, {"interrupt_id", "i-1"}, {"decided_by", 5}}, 0);
  auto warnings = of_kind(client.take_effects(), Kind::kWarning);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].text.find("ignoring a message from the relay") == 0);
}

TEST_CASE("hitl client: stdin lines are expanded and sent, bad lines are reported with their number",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1")}), 0);
  client.take_effects();
  client.on_input_line(R"({"interrupt_id":"i-1","type":"reject","message":"no"})", 1, 0);
  client.on_input_line("garbage", 2, 0);
  client.on_input_line("   \r", 3, 0);
  client.on_input_line(R"({"type":"approve"})", 4, 0);
  client.on_input_line(R"({"interrupt_id":"i-1","type":"approve"})", 5, 0);
  auto effects = client.take_effects();
  auto sent = sends(effects);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["decisions"][0]["message"] == "no");
  CHECK(sent[0]["decided_by"] == "alice@host");
  auto errors = of_kind(effects, Kind::kLineError);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].line == 2);
  CHECK(errors[0].text == "not a JSON object");
  CHECK(errors[1].line == 4);
  CHECK(errors[1].text == "needs a string interrupt_id");
  CHECK(errors[2].line == 5);
  CHECK(errors[2].text == "a decision for i-1 was already sent");

  client.on_message(broadcast(sent[0], kUs), 1);
  auto accepted = of_kind(client.take_effects(), Kind::kAccepted);
  REQUIRE(accepted.size() == 1);
  CHECK(accepted[0].source == smws::HitlSource::kStdin);
  CHECK(accepted[0].line == 1);
}

TEST_CASE("hitl client: a stdin decision for an interrupt not yet pending is held until it arrives",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({}), 0);
  client.take_effects();
  client.on_input_line(R"({"interrupt_id":"i-9","type":"approve"})", 1, 10);
  auto effects = client.take_effects();
  CHECK(sends(effects).empty());
  auto notes = of_kind(effects, Kind::kNote);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].text == "line 1: i-9 is not pending yet; held for up to 5 s");
  CHECK(client.awaiting());
  CHECK(client.next_tick() == Approx(10 + smws::kHitlHoldTimeout));
  client.tick(12);
  CHECK(client.take_effects().empty());

  client.on_message(interrupt("i-9"), 13);
  auto sent = sends(client.take_effects());
  REQUIRE(sent.size() == 1);
  CHECK(sent[0]["interrupt_id"] == "i-9");
  client.tick(30);
  CHECK(of_kind(client.take_effects(), Kind::kLineError).empty());
}

TEST_CASE("hitl client: a held stdin decision whose interrupt never comes is an error naming it",
          "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({}), 0);
  client.on_input_line(R"({"interrupt_id":"nope","type":"approve"})", 3, 10);
  client.take_effects();
  client.tick(10 + smws::kHitlHoldTimeout - 0.1);
  CHECK(of_kind(client.take_effects(), Kind::kLineError).empty());
  client.tick(10 + smws::kHitlHoldTimeout);
  auto errors = of_kind(client.take_effects(), Kind::kLineError);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].line == 3);
  CHECK(errors[0].text == "nope is not pending (waited 5 s for it)");
  CHECK_FALSE(client.awaiting());
}

TEST_CASE("hitl client: a request entering its last quarter (1 to 30 s) is announced once", "[hitl-client]") {
  CHECK(smws::hitl_warn_threshold(300) == 30);
  CHECK(smws::hitl_warn_threshold(40) == 10);
  CHECK(smws::hitl_warn_threshold(2) == 1);

  auto client = connected();
  client.on_message(snapshot({interrupt("i-1", "deploy", 40), interrupt("i-2", "deploy", 300)}), 0);
  client.take_effects();
  CHECK(client.next_tick() == Approx(30));
  client.tick(29.9);
  CHECK(client.take_effects().empty());
  client.tick(30);
  auto warnings = of_kind(client.take_effects(), Kind::kTimingOut);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].id == "i-1");
  CHECK(warnings[0].seconds == Approx(10));
  client.tick(31);
  CHECK(client.take_effects().empty());

  // One whose decision was sent is not announced.
  client.decide("i-2", json::array({{{"type", "approve"}}}));
  client.take_effects();
  client.tick(290);
  CHECK(of_kind(client.take_effects(), Kind::kTimingOut).empty());
}

TEST_CASE("hitl client: skipped requests are passed over and counted until unskipped", "[hitl-client]") {
  auto client = connected();
  client.on_message(snapshot({interrupt("i-1"), interrupt("i-2")}), 0);
  client.find("i-1")->skipped = true;
  std::size_t skipped = 0;
  CHECK(client.next_to_ask(&skipped) == std::optional<std::string>("i-2"));
  CHECK(skipped == 1);
  client.find("i-2")->skipped = true;
  CHECK_FALSE(client.next_to_ask(&skipped));
  CHECK(skipped == 2);
  client.unskip_all();
  CHECK(client.next_to_ask(&skipped) == std::optional<std::string>("i-1"));
}

TEST_CASE("hitl client: the reader keeps HITL messages, answers app pings and drops the rest unparsed",
          "[hitl-client]") {
  using smws::HitlRelayText;
  using smws::classify_relay_text;
  CHECK(classify_relay_text(R"({"type":"state_change","machine_id":"m"})") == HitlRelayText::kDrop);
  CHECK(classify_relay_text(R"({"type":"interrupt","interrupt_id":"i"})") == HitlRelayText::kKeep);
  CHECK(classify_relay_text(R"({"type":"initial","pending":[]})") == HitlRelayText::kKeep);
  CHECK(classify_relay_text(R"({"type":"ping","timestamp":1})") == HitlRelayText::kAppPing);
  // An escape could spell a type name, so such text is parsed.
  CHECK(classify_relay_text(R"({"type":"\u0067ap"})") == HitlRelayText::kKeep);
  // A wanted word elsewhere than in "type" is not enough.
  CHECK(classify_relay_text(R"({"type":"log","text":"\"error\""})") == HitlRelayText::kDrop);
  CHECK(classify_relay_text(R"(["interrupt"])") == HitlRelayText::kDrop);
  CHECK(classify_relay_text("\"error\" not json") == HitlRelayText::kDrop);
}
