// SPDX-License-Identifier: Apache-2.0
// The vote tally (auth/quorum.h): distinct approvers, votes, veto, edit
// restarting the count, double votes, mixed answers.
#include <catch2/catch.hpp>

#include "smws/auth/quorum.h"

using nlohmann::json;
using namespace smws::auth;

namespace {

Identity person(const std::string& name) { return Identity{name, {"ops"}, "users", std::nullopt}; }
const json kApprove = json::parse(R"([{"type":"approve"}])");
const json kReject = json::parse(R"([{"type":"reject","message":"not on a Friday"}])");
json edit(const std::string& env) {
  return json::array({{{"type", "edit"}, {"edited_action", {{"name", "deploy"}, {"args", {{"env", env}}}}}}});
}

}  // namespace

TEST_CASE("required 1: the first decision decides, as without a policy", "[auth][quorum]") {
  Quorum q("i-1", 1, 1);
  json approve_with_note = json::parse(R"([{"type":"approve","note":"kept"}])");
  QuorumOutcome o = q.add(person("alice"), approve_with_note);
  REQUIRE(o.kind == QuorumOutcome::kDecided);
  CHECK(o.decisions == approve_with_note);
  REQUIRE(o.deciders.size() == 1);
  CHECK(o.deciders[0].name == "alice");
  CHECK_FALSE(o.vetoed);
  CHECK(q.add(person("bob"), kApprove).error == "already decided");
}

TEST_CASE("required 2: the first approval is a vote, the second distinct one decides", "[auth][quorum]") {
  Quorum q("i-7", 2, 1);
  QuorumOutcome o = q.add(person("alice"), kApprove);
  REQUIRE(o.kind == QuorumOutcome::kVote);
  CHECK(o.vote == json::parse(R"({"type":"vote","interrupt_id":"i-7",
      "by":{"name":"alice","groups":["ops"],"via":"users"},"have":1,"need":2})"));
  CHECK(q.votes_json() == json::parse(R"([{"name":"alice","via":"users"}])"));
  o = q.add(person("alice"), kApprove);
  CHECK(o.kind == QuorumOutcome::kError);
  CHECK(o.error == "alice has already approved (1 of 2)");
  CHECK(q.have() == 1);
  o = q.add(person("bob"), kApprove);
  REQUIRE(o.kind == QuorumOutcome::kDecided);
  CHECK(o.decisions == kApprove);
  REQUIRE(o.deciders.size() == 2);
  CHECK(o.deciders[0].name == "alice");
  CHECK(o.deciders[1].name == "bob");
  CHECK(q.decided());
}

TEST_CASE("a reject by any allowed approver decides at once: a veto", "[auth][quorum]") {
  Quorum q("i-7", 3, 1);
  REQUIRE(q.add(person("alice"), kApprove).kind == QuorumOutcome::kVote);
  QuorumOutcome o = q.add(person("bob"), kReject);
  REQUIRE(o.kind == QuorumOutcome::kDecided);
  CHECK(o.vetoed);
  CHECK(o.decisions == kReject);
  REQUIRE(o.deciders.size() == 1);
  CHECK(o.deciders[0].name == "bob");
  // Even one who approved before may veto.
  Quorum again("i-8", 2, 1);
  again.add(person("alice"), kApprove);
  CHECK(again.add(person("alice"), json::parse(R"([{"type":"respond","message":"use 43"}])")).vetoed);
}

TEST_CASE("an edit replaces the action and restarts the count with the editor", "[auth][quorum]") {
  Quorum q("i-7", 2, 1);
  REQUIRE(q.add(person("alice"), kApprove).kind == QuorumOutcome::kVote);
  QuorumOutcome o = q.add(person("bob"), edit("staging"));
  REQUIRE(o.kind == QuorumOutcome::kVote);
  CHECK(o.vote["have"] == 1);
  CHECK(o.vote["by"]["name"] == "bob");
  CHECK(o.vote["restarted"] == true);
  CHECK(o.vote["decisions"] == edit("staging"));
  CHECK(q.votes_json() == json::parse(R"([{"name":"bob","via":"users"}])"));
  // bob's edit counts as his approval of the edited action.
  CHECK(q.add(person("bob"), kApprove).error == "bob has already approved (1 of 2)");
  // alice approved the old version; she must approve the new one again.
  o = q.add(person("alice"), kApprove);
  REQUIRE(o.kind == QuorumOutcome::kDecided);
  CHECK(o.decisions == edit("staging"));  // what the agent must run
  REQUIRE(o.deciders.size() == 2);
  CHECK(o.deciders[0].name == "bob");
  CHECK(o.deciders[1].name == "alice");
}

TEST_CASE("with several actions an edit replaces only the edited one", "[auth][quorum]") {
  Quorum q("i-9", 2, 2);
  json first = json::array({{{"type", "approve"}}, edit("eu")[0]});
  REQUIRE(q.add(person("alice"), first).kind == QuorumOutcome::kVote);
  QuorumOutcome o = q.add(person("bob"), json::parse(R"([{"type":"approve"},{"type":"approve"}])"));
  REQUIRE(o.kind == QuorumOutcome::kDecided);
  CHECK(o.decisions == first);
}

TEST_CASE("with a quorum, a half-approving half-rejecting decision is refused", "[auth][quorum]") {
  Quorum q("i-9", 2, 2);
  QuorumOutcome o = q.add(person("alice"), json::parse(R"([{"type":"approve"},{"type":"reject"}])"));
  CHECK(o.kind == QuorumOutcome::kError);
  CHECK(o.error == "a decision needing 2 approvals must approve or edit every action, or reject");
  CHECK(q.have() == 0);
  // The same with required 1 is simply the decision.
  Quorum one("i-10", 1, 2);
  o = one.add(person("alice"), json::parse(R"([{"type":"approve"},{"type":"reject"}])"));
  CHECK(o.kind == QuorumOutcome::kDecided);
}

TEST_CASE("a decision with the wrong number of entries changes nothing", "[auth][quorum]") {
  Quorum q("i-9", 2, 2);
  CHECK(q.add(person("alice"), kApprove).kind == QuorumOutcome::kError);
  CHECK(q.add(person("alice"), json::parse(R"([{"type":"approve"},{"type":"maybe"}])")).kind == QuorumOutcome::kError);
  CHECK(q.add(person("alice"), json::object()).kind == QuorumOutcome::kError);
  CHECK(q.have() == 0);
  CHECK_FALSE(q.decided());
}
