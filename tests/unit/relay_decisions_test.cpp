// SPDX-License-Identifier: Apache-2.0
// relay::Decisions without sockets: stdin interrupts, client decisions and
// timeouts, and --audit's record-then-deliver, read through RecordingIo.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "relay_test_io.h"
#include "smws/relay/audience.h"
#include "smws/relay/decisions.h"
#include "smws/auth/identity.h"

using nlohmann::json;
using smws::HitlOptions;
using smws::HubOptions;
using smws::IngestResult;
using smws::MutexLock;
using smws::RelayHub;
using smws::relay::Audience;
using smws::relay::Decisions;
using smws::relay::RelayState;
using smws::test::RecordingIo;

namespace {

// A relay of its own, as Relay wires it: the hub's interrupt interceptor is
// Decisions'. mono/wall are the clocks the test moves.
struct LocalRelay {
  explicit LocalRelay(bool audit) : decisions(&state, &io, &audience, audit) {
    MutexLock lock(&state.mu);
    state.hub.set_interceptor("interrupt", [this](std::string_view event, double) {
      decisions.assert_locked();
      return decisions.on_stdin_interrupt(event, mono);
    });
  }
  // One stdin line, as StdinSource hands it to the hub.
  IngestResult stdin_line(const json& event) {
    MutexLock lock(&state.mu);
    return state.hub.ingest(event.dump(), wall, ++line);
  }
  bool pending(const std::string& id) {
    MutexLock lock(&state.mu);
    return state.hitl.is_pending(id);
  }
  void decide(smws::net::ClientId client, const json& decision,
              smws::auth::Identity who = smws::auth::Identity::anonymous()) {
    decisions.decide(client, decision, smws::relay::Peer{"127.0.0.1:4000", std::move(who), std::nullopt}, mono,
                     wall);
  }
  // Roles on (as with --users): `approvers` may decide; policy rules given.
  void roles(std::vector<std::string> approvers, std::vector<smws::auth::PolicyRule> rules = {}) {
    REQUIRE(policy.set_approvers(approvers).ok());
    policy.set_rules(std::move(rules));
    policy.set_roles_enabled(true);
    decisions.set_rules(smws::relay::IntakeRules{&policy, reply_dir});
  }
  smws::auth::Policy policy;
  std::string reply_dir;

  RecordingIo io;
  RelayState state{RelayHub(HubOptions{}), HitlOptions{300, 100}};
  Audience audience{&state, &io, false};
  Decisions decisions;
  double mono = 1000, wall = 1.7e9;
  uint64_t line = 0;
};

json interrupt(const std::string& id, const std::string& reply_to = "") {
  json j = {{"type", "interrupt"},
            {"interrupt_id", id},
            {"action_requests", {{{"name", "deploy"}, {"args", {{"env", "prod"}}}}}},
            {"review_configs", {{{"action_name", "deploy"}, {"allowed_decisions", {"approve", "reject"}}}}},
            {"timeout", 30}};
  if (!reply_to.empty()) j["reply_to"] = reply_to;
  return j;
}

json approve(const std::string& id) {
  return {{"type", "decision"}, {"interrupt_id", id}, {"decisions", {{{"type", "approve"}}}}};
}

}  // namespace

TEST_CASE("without --audit a valid decision is broadcast, printed and sent to reply_to at once",
          "[relay][decisions]") {
  LocalRelay r(false);
  REQUIRE(r.stdin_line(interrupt("i-1", "/tmp/reply.sock")).ok());
  REQUIRE(r.pending("i-1"));
  REQUIRE(r.io.records.empty());

  r.decide(7, approve("i-1"));
  REQUIRE(r.io.broadcasts.size() == 1);
  CHECK(r.io.broadcasts[0]["type"] == "decision");
  CHECK(r.io.broadcasts[0]["interrupt_id"] == "i-1");
  CHECK(r.io.broadcasts[0]["client"] == "127.0.0.1:4000");
  REQUIRE(r.io.printed.size() == 1);
  CHECK(r.io.printed[0]["interrupt_id"] == "i-1");
  REQUIRE(r.io.replies.size() == 1);
  CHECK(r.io.replies[0].first == "/tmp/reply.sock");
  CHECK(r.io.replies[0].second["decisions"][0]["type"] == "approve");
  CHECK_FALSE(r.pending("i-1"));
  CHECK(r.io.sent.empty());
}

TEST_CASE("a wrong or late decision is answered to its sender only and changes nothing",
          "[relay][decisions]") {
  LocalRelay r(false);
  REQUIRE(r.stdin_line(interrupt("i-1")).ok());
  json edit = {{"type", "decision"}, {"interrupt_id", "i-1"}, {"decisions", {{{"type", "edit"}}}}};
  r.decide(3, edit);  // edit is not allowed by review_configs
  REQUIRE(r.io.sent.size() == 1);
  CHECK(r.io.sent[0].id == 3);
  CHECK(r.io.sent[0].message["type"] == "error");
  CHECK(r.io.broadcasts.empty());
  CHECK(r.pending("i-1"));

  r.decide(4, approve("i-1"));
  r.decide(5, approve("i-1"));
  REQUIRE(r.io.sent.size() == 2);
  CHECK(r.io.sent[1].id == 5);
  CHECK(r.io.sent[1].message["error"] == "not pending");
  CHECK(r.io.broadcasts.size() == 1);
  CHECK(r.io.printed.size() == 1);
}

TEST_CASE("with --audit a decision is delivered only once its record is written", "[relay][decisions]") {
  LocalRelay r(true);
  REQUIRE(r.stdin_line(interrupt("i-1", "/tmp/r.sock")).status == IngestResult::Status::kHeld);
  REQUIRE(r.io.records.size() == 1);  // the interrupt, first
  CHECK(r.io.records[0].record["interrupt_id"] == "i-1");
  CHECK_FALSE(r.pending("i-1"));  // not pending before its record is written
  CHECK(r.io.broadcasts.empty());
  r.io.post_outcome(&r.state, 0);
  CHECK(r.decisions.handle_outcomes(r.mono, r.wall));  // stdin may read on
  CHECK(r.pending("i-1"));
  REQUIRE(r.io.broadcasts.size() == 1);
  CHECK(r.io.broadcasts[0]["type"] == "interrupt");

  r.decide(9, approve("i-1"));
  REQUIRE(r.io.records.size() == 2);
  CHECK(r.io.records[1].record["type"] == "decision");
  CHECK(r.io.broadcasts.size() == 1);  // nothing delivered yet
  CHECK(r.io.printed.empty());
  CHECK(r.io.replies.empty());
  r.io.post_outcome(&r.state, 1);
  CHECK_FALSE(r.decisions.handle_outcomes(r.mono, r.wall));
  REQUIRE(r.io.broadcasts.size() == 2);
  CHECK(r.io.broadcasts[1]["type"] == "decision");
  CHECK(r.io.printed.size() == 1);
  CHECK(r.io.replies.size() == 1);
  CHECK_FALSE(r.pending("i-1"));
  CHECK(r.decisions.audit_error().empty());
}

TEST_CASE("with --audit a decision whose record fails is refused and stays pending", "[relay][decisions]") {
  LocalRelay r(true);
  r.stdin_line(interrupt("i-1"));
  r.io.post_outcome(&r.state, 0);
  r.decisions.handle_outcomes(r.mono, r.wall);

  r.decide(9, approve("i-1"));
  r.io.post_outcome(&r.state, 1, "audit file a.log: No space left on device");
  r.decisions.handle_outcomes(r.mono, r.wall);
  REQUIRE(r.io.sent.size() == 1);
  CHECK(r.io.sent[0].id == 9);
  CHECK(r.io.sent[0].message["reason"] == "audit failed");
  CHECK(r.io.sent[0].message["interrupt_id"] == "i-1");
  CHECK(r.io.broadcasts.size() == 1);  // only the interrupt
  CHECK(r.io.printed.empty());
  CHECK(r.pending("i-1"));
  CHECK(r.decisions.audit_failures() == 1);
  CHECK(r.decisions.audit_error() == "audit file a.log: No space left on device");

  // Pending again exactly as before: the next decision is accepted.
  r.decide(10, approve("i-1"));
  r.io.post_outcome(&r.state, 2);
  r.decisions.handle_outcomes(r.mono, r.wall);
  CHECK(r.io.broadcasts.size() == 2);
  CHECK_FALSE(r.pending("i-1"));
  CHECK(r.decisions.audit_error().empty());
}

TEST_CASE("with --audit an interrupt whose record fails is neither pending nor broadcast",
          "[relay][decisions]") {
  LocalRelay r(true);
  r.stdin_line(interrupt("i-1"));
  r.io.post_outcome(&r.state, 0, "audit file a.log: Read-only file system");
  CHECK(r.decisions.handle_outcomes(r.mono, r.wall));
  CHECK_FALSE(r.pending("i-1"));
  CHECK(r.io.broadcasts.empty());
  MutexLock lock(&r.state.mu);
  CHECK_FALSE(r.state.held_interrupt.has_value());
}

TEST_CASE("a timeout resolves as a timed-out reject, and with --audit a failed record is retried",
          "[relay][decisions]") {
  SECTION("without --audit") {
    LocalRelay r(false);
    r.stdin_line(interrupt("i-1", "/tmp/r.sock"));
    r.decisions.tick(r.mono + 29, r.wall);
    CHECK(r.io.broadcasts.empty());
    r.decisions.tick(r.mono + 31, r.wall);
    REQUIRE(r.io.broadcasts.size() == 1);
    CHECK(r.io.broadcasts[0]["timed_out"] == true);
    CHECK(r.io.broadcasts[0]["decisions"][0]["type"] == "reject");
    CHECK(r.io.replies.size() == 1);
  }
  SECTION("with --audit") {
    LocalRelay r(true);
    r.stdin_line(interrupt("i-1"));
    r.io.post_outcome(&r.state, 0);
    r.decisions.handle_outcomes(r.mono, r.wall);
    r.decisions.tick(r.mono + 31, r.wall);
    REQUIRE(r.io.records.size() == 2);
    r.io.post_outcome(&r.state, 1, "audit file a.log: No space left on device");
    r.decisions.handle_outcomes(r.mono + 31, r.wall);
    CHECK(r.pending("i-1"));
    CHECK(r.io.broadcasts.size() == 1);
    r.decisions.tick(r.mono + 32, r.wall);  // due again: retried
    REQUIRE(r.io.records.size() == 3);
    r.io.post_outcome(&r.state, 2);
    r.decisions.handle_outcomes(r.mono + 32, r.wall);
    REQUIRE(r.io.broadcasts.size() == 2);
    CHECK(r.io.broadcasts[1]["timed_out"] == true);
    CHECK_FALSE(r.pending("i-1"));
  }
}

namespace {

smws::auth::Identity person(const std::string& name, std::vector<std::string> groups) {
  smws::auth::Identity i;
  i.name = name;
  i.groups = std::move(groups);
  i.via = "users";
  return i;
}

}  // namespace

TEST_CASE("reply_to is never shown to clients, and a bad interrupt is answered on it at once",
          "[relay][decisions]") {
  LocalRelay r(false);
  IngestResult ok = r.stdin_line(interrupt("i-1", "/tmp/r.sock"));
  REQUIRE(ok.ok());
  CHECK(json::parse(*ok.payload).count("reply_to") == 0);
  {
    MutexLock lock(&r.state.mu);
    CHECK(r.state.hitl.pending_json(r.mono)[0].count("reply_to") == 0);
  }
  json bad = interrupt("i-2", "/tmp/r2.sock");
  bad["action_requests"] = json::array();
  CHECK_FALSE(r.stdin_line(bad).ok());
  REQUIRE(r.io.replies.size() == 1);
  CHECK(r.io.replies[0].first == "/tmp/r2.sock");
  CHECK(r.io.replies[0].second["type"] == "error");
  CHECK(r.io.replies[0].second["interrupt_id"] == "i-2");
  CHECK(r.io.replies[0].second["reason"] == "invalid");
}

TEST_CASE("a --reply-dir refuses an interrupt whose reply_to is elsewhere, and sends it nothing",
          "[relay][decisions]") {
  LocalRelay r(false);
  r.reply_dir = "/run/smws/replies";
  r.decisions.set_rules(smws::relay::IntakeRules{nullptr, r.reply_dir});
  CHECK_FALSE(r.stdin_line(interrupt("i-1", "/home/victim/.sock")).ok());
  CHECK_FALSE(r.stdin_line(interrupt("i-2", "/run/smws/replies/../../x.sock")).ok());
  CHECK(r.io.replies.empty());
  CHECK(r.stdin_line(interrupt("i-3", "/run/smws/replies/sm-reply-1.sock")).ok());
}

TEST_CASE("with roles only an approver decides, and the relay writes who decided", "[relay][decisions]") {
  LocalRelay r(false);
  r.roles({"ops"});
  REQUIRE(r.stdin_line(interrupt("i-1", "/tmp/r.sock")).ok());
  {
    MutexLock lock(&r.state.mu);
    const json* stored = r.state.hitl.pending_event("i-1");
    REQUIRE(stored);
    CHECK((*stored)["policy"]["approvers"] == json{"ops"});
    CHECK((*stored)["policy"]["required"] == 1);
  }
  json claimed = approve("i-1");
  claimed["decided_by"] = "ceo@corp (verified via SSO)";
  // Members only the relay writes, forged by the client.
  claimed["from"] = {{"name", "root"}, {"via", "users"}};
  claimed["verified"] = true;
  claimed["policy"] = {{"approvers", {"x"}}, {"required", 1}};
  claimed["audit_seq"] = 999;
  r.decide(1, claimed, person("mallory", {"dev"}));
  REQUIRE(r.io.sent.size() == 1);
  CHECK(r.io.sent[0].message["error"] == "not allowed: mallory may not decide deploy (approvers: ops)");
  CHECK(r.io.broadcasts.empty());
  CHECK(r.decisions.not_allowed() == 1);
  // A token holder without a verified identity watches only.
  r.decide(2, approve("i-1"), smws::auth::Identity::shared_token());
  CHECK(r.io.sent.size() == 2);
  CHECK(r.pending("i-1"));

  r.decide(3, claimed, person("alice", {"ops"}));
  REQUIRE(r.io.broadcasts.size() == 1);
  const json& d = r.io.broadcasts[0];
  CHECK(d["decided_by"] == json{{"name", "alice"}, {"via", "users"}});
  CHECK(d["claimed_by"] == "ceo@corp (verified via SSO)");
  CHECK(d.count("from") == 0);
  CHECK(d.count("verified") == 0);
  CHECK(d.count("policy") == 0);
  CHECK(d.count("audit_seq") == 0);
  CHECK(r.io.replies.size() == 1);
}

TEST_CASE("without roles the claimed name stays, marked unverified", "[relay][decisions]") {
  LocalRelay r(false);
  r.stdin_line(interrupt("i-1"));
  json claimed = approve("i-1");
  claimed["decided_by"] = "alice";
  r.decide(1, claimed);
  REQUIRE(r.io.broadcasts.size() == 1);
  CHECK(r.io.broadcasts[0]["decided_by"] == "alice");
  CHECK(r.io.broadcasts[0]["verified"] == false);
}

TEST_CASE("a quorum of two: a vote first, the second person decides, the same person twice is refused",
          "[relay][decisions]") {
  LocalRelay r(false);
  smws::auth::PolicyRule rule;
  rule.action = "deploy*";
  rule.approvers = {"ops"};
  rule.required = 2;
  r.roles({"ops"}, {rule});
  r.stdin_line(interrupt("i-1", "/tmp/r.sock"));
  r.decide(1, approve("i-1"), person("alice", {"ops"}));
  REQUIRE(r.io.broadcasts.size() == 1);
  CHECK(r.io.broadcasts[0]["type"] == "vote");
  CHECK(r.io.broadcasts[0]["have"] == 1);
  CHECK(r.io.broadcasts[0]["need"] == 2);
  CHECK(r.pending("i-1"));
  CHECK(r.io.replies.empty());

  r.decide(1, approve("i-1"), person("alice", {"ops"}));
  REQUIRE(r.io.sent.size() == 1);
  CHECK(r.io.sent[0].message["type"] == "error");

  r.decide(2, approve("i-1"), person("bob", {"ops"}));
  REQUIRE(r.io.broadcasts.size() == 2);
  const json& d = r.io.broadcasts[1];
  CHECK(d["type"] == "decision");
  CHECK(d["decided_by"] == json{{{"name", "alice"}, {"via", "users"}}, {{"name", "bob"}, {"via", "users"}}});
  CHECK_FALSE(r.pending("i-1"));
  CHECK(r.io.replies.size() == 1);
}

TEST_CASE("with --audit an interrupt whose record fails is answered on reply_to with reason audit",
          "[relay][decisions]") {
  LocalRelay r(true);
  r.stdin_line(interrupt("i-1", "/tmp/r.sock"));
  r.io.post_outcome(&r.state, 0, "audit file /dev/full: No space left on device");
  r.decisions.handle_outcomes(r.mono, r.wall);
  REQUIRE(r.io.replies.size() == 1);
  CHECK(r.io.replies[0].second["reason"] == "audit");
  CHECK(r.io.replies[0].second["interrupt_id"] == "i-1");
}
