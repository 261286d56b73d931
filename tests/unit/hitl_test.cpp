// SPDX-License-Identifier: Apache-2.0
// HitlTable: pending interrupts, decision validation, first-wins, timeouts;
// AuditLog and the reply datagram. Time is the `now` argument throughout.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "support.h"

using nlohmann::json;
using smws::HitlTable;

namespace {

json deploy_interrupt(const std::string& id = "i-7") {
  json event = json::parse(R"({"type":"interrupt","thread_id":"t-1",
    "action_requests":[{"name":"deploy","args":{"env":"prod"},"description":"Deploy build 42"}],
    "review_configs":[{"action_name":"deploy","allowed_decisions":["approve","edit","reject"]}],
    "timeout":300,"reply_to":"/tmp/sm-reply-1234.sock"})");
  if (!id.empty()) event["interrupt_id"] = id;
  return event;
}

json two_action_interrupt() {
  return json::parse(R"({"type":"interrupt","interrupt_id":"i-2","thread_id":"t-2",
    "action_requests":[{"name":"deploy","args":{}},{"name":"drop_table","args":{"t":"users"}}],
    "review_configs":[{"action_name":"drop_table","allowed_decisions":["reject"]}],
    "timeout":10})");
}

json approve(const std::string& id = "i-7") {
  return {{"type", "decision"}, {"interrupt_id", id}, {"decisions", json::array({{{"type", "approve"}}})}};
}

std::string error_of(const smws::HitlDecisionResult& result) {
  REQUIRE_FALSE(result.accepted());
  REQUIRE(result.error["type"] == "error");
  return result.error["error"].get<std::string>();
}

}  // namespace

TEST_CASE("an interrupt without interrupt_id gets a fresh one and the default timeout", "[hitl]") {
  HitlTable table({42.0, 10});
  auto first = table.on_interrupt(deploy_interrupt(""), 0);
  json no_timeout = deploy_interrupt("");
  no_timeout.erase("timeout");
  auto second = table.on_interrupt(no_timeout, 0);
  REQUIRE(first.ok);
  REQUIRE(second.ok);
  CHECK(first.event["interrupt_id"].is_string());
  CHECK(first.event["interrupt_id"] != second.event["interrupt_id"]);
  CHECK(first.event["timeout"] == 300);
  CHECK(second.event["timeout"] == 42.0);
  CHECK(table.next_deadline() == Approx(42.0));
  // Unknown fields pass through untouched.
  CHECK(first.event["reply_to"] == "/tmp/sm-reply-1234.sock");
}

TEST_CASE("an assigned id never collides with a client-chosen pending id", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt("i-1"), 0).ok);
  auto assigned = table.on_interrupt(deploy_interrupt(""), 0);
  REQUIRE(assigned.ok);
  CHECK(assigned.event["interrupt_id"] != "i-1");
  CHECK(table.pending_count() == 2);
}

TEST_CASE("malformed interrupts are refused and not kept", "[hitl]") {
  HitlTable table({300, 1});
  CHECK_FALSE(table.on_interrupt(json::array(), 0).ok);
  json no_actions = deploy_interrupt();
  no_actions.erase("action_requests");
  CHECK(table.on_interrupt(no_actions, 0).error.find("action_requests") != std::string::npos);
  json bad_timeout = deploy_interrupt();
  bad_timeout["timeout"] = "soon";
  CHECK(table.on_interrupt(bad_timeout, 0).error.find("timeout") != std::string::npos);
  json bad_config = deploy_interrupt();
  bad_config["review_configs"][0]["allowed_decisions"] = {"maybe"};
  CHECK_FALSE(table.on_interrupt(bad_config, 0).ok);
  json numeric_id = deploy_interrupt();
  numeric_id["interrupt_id"] = 7;
  CHECK_FALSE(table.on_interrupt(numeric_id, 0).ok);
  CHECK(table.pending_count() == 0);

  REQUIRE(table.on_interrupt(deploy_interrupt("i-7"), 0).ok);
  CHECK(table.on_interrupt(deploy_interrupt("i-7"), 0).error.find("already pending") != std::string::npos);
  CHECK(table.on_interrupt(deploy_interrupt("i-8"), 0).error.find("too many") != std::string::npos);
  CHECK(table.pending_count() == 1);
}

TEST_CASE("an approval resolves the interrupt, keeps decided_by and adds the client", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  json decision = approve();
  decision["decided_by"] = "alice@host";
  decision["note"] = "kept";
  auto result = table.on_decision(decision, "127.0.0.1:5555", 1);
  REQUIRE(result.accepted());
  const json& out = result.resolved->decision;
  CHECK(out["type"] == "decision");
  CHECK(out["interrupt_id"] == "i-7");
  CHECK(out["thread_id"] == "t-1");
  CHECK(out["decided_by"] == "alice@host");
  CHECK(out["client"] == "127.0.0.1:5555");
  CHECK(out["note"] == "kept");
  CHECK_FALSE(out.contains("timed_out"));
  CHECK(result.resolved->reply_to == "/tmp/sm-reply-1234.sock");
  CHECK_FALSE(table.is_pending("i-7"));
  CHECK(table.pending_json(1).empty());
}

TEST_CASE("each invalid decision gets an error and leaves the interrupt pending", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  REQUIRE(table.on_interrupt(two_action_interrupt(), 0).ok);

  CHECK(error_of(table.on_decision(json::array({1}), "c", 1)).find("object") != std::string::npos);
  CHECK(error_of(table.on_decision(json{{"type", "decision"}}, "c", 1)).find("interrupt_id") !=
        std::string::npos);

  json no_list = approve();
  no_list.erase("decisions");
  CHECK(error_of(table.on_decision(no_list, "c", 1)).find("array") != std::string::npos);

  json too_many = approve();
  too_many["decisions"].push_back({{"type", "approve"}});
  CHECK(error_of(table.on_decision(too_many, "c", 1)).find("expected 1") != std::string::npos);

  json not_object = approve();
  not_object["decisions"] = json::array({"approve"});
  CHECK(error_of(table.on_decision(not_object, "c", 1)).find("must be an object") != std::string::npos);

  json unknown_type = approve();
  unknown_type["decisions"][0]["type"] = "maybe";
  CHECK(error_of(table.on_decision(unknown_type, "c", 1)).find("approve, edit or reject") != std::string::npos);

  json edit_without_action = approve();
  edit_without_action["decisions"][0] = {{"type", "edit"}};
  CHECK(error_of(table.on_decision(edit_without_action, "c", 1)).find("edited_action") != std::string::npos);

  json edit_bad_args = approve();
  edit_bad_args["decisions"][0] = {{"type", "edit"}, {"edited_action", {{"name", "deploy"}, {"args", "env=prod"}}}};
  CHECK(error_of(table.on_decision(edit_bad_args, "c", 1)).find("args") != std::string::npos);

  json edit_no_name = approve();
  edit_no_name["decisions"][0] = {{"type", "edit"}, {"edited_action", {{"args", json::object()}}}};
  CHECK(error_of(table.on_decision(edit_no_name, "c", 1)).find("name") != std::string::npos);

  json bad_message = approve();
  bad_message["decisions"][0] = {{"type", "reject"}, {"message", 5}};
  CHECK(error_of(table.on_decision(bad_message, "c", 1)).find("message") != std::string::npos);

  json wrong_thread = approve();
  wrong_thread["thread_id"] = "t-other";
  CHECK(error_of(table.on_decision(wrong_thread, "c", 1)).find("thread_id") != std::string::npos);

  // review_configs: drop_table allows only reject.
  json not_allowed = {{"type", "decision"}, {"interrupt_id", "i-2"},
                      {"decisions", json::array({{{"type", "approve"}}, {{"type", "approve"}}})}};
  std::string message = error_of(table.on_decision(not_allowed, "c", 1));
  CHECK(message.find("\"approve\" is not allowed for action \"drop_table\"") != std::string::npos);
  CHECK(message.find("allowed: reject") != std::string::npos);

  CHECK(table.is_pending("i-7"));
  CHECK(table.is_pending("i-2"));
  CHECK(table.pending_count() == 2);

  // The error names the interrupt so a client can match it up.
  auto refused = table.on_decision(too_many, "c", 1);
  CHECK(refused.error["interrupt_id"] == "i-7");

  // And a valid one still goes through afterwards.
  json mixed = not_allowed;
  mixed["decisions"][1] = {{"type", "reject"}, {"message", "no"}};
  CHECK(table.on_decision(mixed, "c", 1).accepted());
}

TEST_CASE("an edit with a well-formed edited_action is accepted as sent", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  json edit = approve();
  edit["decisions"][0] = {{"type", "edit"}, {"edited_action", {{"name", "deploy"}, {"args", {{"env", "staging"}}}}}};
  auto result = table.on_decision(edit, "c", 1);
  REQUIRE(result.accepted());
  CHECK(result.resolved->decision["decisions"][0]["edited_action"]["args"]["env"] == "staging");
}

TEST_CASE("first valid decision wins and the second gets not pending", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  json alice = approve();
  alice["decided_by"] = "alice";
  json bob = approve();
  bob["decisions"][0] = {{"type", "reject"}, {"message", "no"}};
  bob["decided_by"] = "bob";
  auto first = table.on_decision(alice, "127.0.0.1:1", 1);
  auto second = table.on_decision(bob, "127.0.0.1:2", 1);
  REQUIRE(first.accepted());
  CHECK(first.resolved->decision["decided_by"] == "alice");
  CHECK(error_of(second) == "not pending");
  CHECK(second.error["reason"] == "already decided");
  CHECK(second.error["interrupt_id"] == "i-7");
  // Nothing left to time out.
  CHECK(table.expire(1000).empty());
}

TEST_CASE("a decision for an unknown id is not pending", "[hitl]") {
  HitlTable table;
  auto result = table.on_decision(approve("i-404"), "c", 0);
  CHECK(error_of(result) == "not pending");
  CHECK(result.error["reason"] == "unknown interrupt_id");
}

TEST_CASE("at the instant of the deadline the timeout wins over a decision", "[hitl]") {
  HitlTable table;
  json event = deploy_interrupt();
  event["timeout"] = 5;
  REQUIRE(table.on_interrupt(event, 100).ok);
  REQUIRE(table.next_deadline() == Approx(105));

  // Just before: decidable (checked on a copy of the table).
  HitlTable before = table;
  CHECK(before.on_decision(approve(), "c", 104.999).accepted());

  // Decision first, at exactly the deadline: refused, still in the table.
  auto late = table.on_decision(approve(), "c", 105);
  CHECK(error_of(late) == "not pending");
  CHECK(late.error["reason"] == "timed out");
  CHECK(table.expire(104.999).empty());
  auto expired = table.expire(105);
  REQUIRE(expired.size() == 1);
  const json& decision = expired[0].decision;
  CHECK(decision["type"] == "decision");
  CHECK(decision["interrupt_id"] == "i-7");
  CHECK(decision["thread_id"] == "t-1");
  CHECK(decision["timed_out"] == true);
  CHECK(decision["decisions"] == json::parse(R"([{"type":"reject","message":"timed out"}])"));
  CHECK(expired[0].reply_to == "/tmp/sm-reply-1234.sock");
  CHECK_FALSE(table.next_deadline().has_value());

  // After expiry, a decision is told it timed out.
  auto after = table.on_decision(approve(), "c", 106);
  CHECK(error_of(after) == "not pending");
  CHECK(after.error["reason"] == "timed out");
}

TEST_CASE("a timeout rejects every action request, oldest deadline first", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(two_action_interrupt(), 0).ok);  // deadline 10
  json soon = deploy_interrupt("i-soon");
  soon["timeout"] = 1;
  REQUIRE(table.on_interrupt(soon, 0).ok);
  CHECK(table.next_deadline() == Approx(1));
  auto expired = table.expire(20);
  REQUIRE(expired.size() == 2);
  CHECK(expired[0].decision["interrupt_id"] == "i-soon");
  CHECK(expired[1].decision["decisions"].size() == 2);
  CHECK(expired[1].reply_to.empty());
}

TEST_CASE("a decision being recorded is neither decidable again nor decided", "[hitl][audit]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  json alice = approve();
  alice["decided_by"] = "alice";
  auto first = table.begin_decision(alice, "127.0.0.1:1", 1);
  REQUIRE(first.accepted());
  CHECK(first.resolved->decision["decided_by"] == "alice");
  CHECK(first.resolved->decision["client"] == "127.0.0.1:1");
  CHECK(first.resolved->reply_to == "/tmp/sm-reply-1234.sock");
  CHECK(table.in_flight("i-7"));

  // A second decision meanwhile: refused, and says why.
  auto second = table.on_decision(approve(), "127.0.0.1:2", 2);
  CHECK(error_of(second) == "not pending");
  CHECK(second.error["reason"] == "being recorded");
  CHECK(error_of(table.begin_decision(approve(), "127.0.0.1:2", 2)) == "not pending");

  // Still listed for snapshots (nothing is decided yet), still counted.
  CHECK(table.pending_json(2).size() == 1);
  CHECK(table.is_pending("i-7"));
  // No timer while in flight: the decision was made in time.
  CHECK_FALSE(table.next_deadline().has_value());
  CHECK(table.expire(1000).empty());
  CHECK(table.begin_expire(1000).empty());
}

TEST_CASE("a committed decision is resolved once", "[hitl][audit]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  REQUIRE(table.begin_decision(approve(), "c", 1).accepted());
  CHECK(table.commit("i-7"));
  CHECK_FALSE(table.commit("i-7"));  // once
  CHECK_FALSE(table.abort("i-7"));
  CHECK_FALSE(table.is_pending("i-7"));
  CHECK(table.pending_json(2).empty());
  auto late = table.on_decision(approve(), "c", 2);
  CHECK(error_of(late) == "not pending");
  CHECK(late.error["reason"] == "already decided");
}

TEST_CASE("an aborted decision leaves the interrupt pending exactly as before", "[hitl][audit]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);  // timeout 300
  HitlTable untouched = table;
  REQUIRE(table.begin_decision(approve(), "c", 1).accepted());
  CHECK(table.abort("i-7"));
  CHECK_FALSE(table.abort("i-7"));
  CHECK_FALSE(table.commit("i-7"));  // nothing in flight any more
  CHECK_FALSE(table.in_flight("i-7"));
  CHECK(table.pending_json(2) == untouched.pending_json(2));
  CHECK(table.next_deadline() == untouched.next_deadline());
  // Decidable again, by anyone.
  json bob = approve();
  bob["decided_by"] = "bob";
  auto again = table.on_decision(bob, "127.0.0.2:9", 3);
  REQUIRE(again.accepted());
  CHECK(again.resolved->decision["decided_by"] == "bob");
}

TEST_CASE("a decision aborted after its deadline times out at the next expiry", "[hitl][audit]") {
  HitlTable table;
  json event = deploy_interrupt();
  event["timeout"] = 5;
  REQUIRE(table.on_interrupt(event, 0).ok);
  REQUIRE(table.begin_decision(approve(), "c", 4).accepted());
  CHECK(table.expire(10).empty());  // in flight past its deadline: not overtaken
  REQUIRE(table.abort("i-7"));
  CHECK(table.next_deadline() == Approx(5));
  auto expired = table.expire(10);
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].decision["timed_out"] == true);
}

TEST_CASE("a timeout being recorded is retried until it is committed, then resolved once",
          "[hitl][audit]") {
  HitlTable table;
  json event = deploy_interrupt();
  event["timeout"] = 5;
  REQUIRE(table.on_interrupt(event, 0).ok);
  CHECK(table.begin_expire(4.9).empty());
  for (double now : {5.0, 5.3, 5.6}) {  // each tick's attempt fails
    auto due = table.begin_expire(now);
    REQUIRE(due.size() == 1);
    CHECK(due[0].decision["timed_out"] == true);
    CHECK(due[0].reply_to == "/tmp/sm-reply-1234.sock");
    CHECK(table.begin_expire(now).empty());  // in flight: not twice at once
    auto refused = table.on_decision(approve(), "c", now);
    CHECK(refused.error["reason"] == "timed out");  // never decidable past the deadline
    REQUIRE(table.abort("i-7"));
    CHECK(table.is_pending("i-7"));
  }
  REQUIRE(table.begin_expire(6).size() == 1);
  CHECK(table.commit("i-7"));
  CHECK(table.begin_expire(7).empty());
  CHECK_FALSE(table.is_pending("i-7"));
  CHECK(table.on_decision(approve(), "c", 8).error["reason"] == "timed out");
}

TEST_CASE("the snapshot lists pending interrupts oldest first with time left", "[hitl]") {
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt("i-b"), 0).ok);
  REQUIRE(table.on_interrupt(deploy_interrupt("i-a"), 10).ok);
  REQUIRE(table.on_interrupt(deploy_interrupt("i-c"), 20).ok);
  REQUIRE(table.on_decision(approve("i-a"), "c", 30).accepted());
  json pending = table.pending_json(50);
  REQUIRE(pending.size() == 2);
  CHECK(pending[0]["interrupt_id"] == "i-b");
  CHECK(pending[0]["expires_in"] == Approx(250));
  CHECK(pending[1]["interrupt_id"] == "i-c");
  CHECK(pending[1]["expires_in"] == Approx(270));
  CHECK(pending[1]["action_requests"][0]["name"] == "deploy");
}

TEST_CASE("a short decision expands to one entry per action request", "[hitl]") {
  std::string error;
  auto full = smws::expand_decision(two_action_interrupt(), json{{"interrupt_id", "i-2"}, {"type", "reject"},
                                                                 {"message", "no"}},
                                    "bob@box", error);
  REQUIRE(full);
  CHECK((*full)["type"] == "decision");
  CHECK((*full)["thread_id"] == "t-2");
  CHECK((*full)["decided_by"] == "bob@box");
  CHECK((*full)["decisions"] == json::parse(R"([{"type":"reject","message":"no"},{"type":"reject","message":"no"}])"));
  CHECK_FALSE(full->contains("message"));

  CHECK_FALSE(smws::expand_decision(two_action_interrupt(),
                                    json{{"interrupt_id", "i-2"}, {"type", "edit"},
                                         {"edited_action", {{"name", "x"}, {"args", json::object()}}}},
                                    "", error));
  CHECK(error.find("exactly one action") != std::string::npos);
  CHECK_FALSE(smws::expand_decision(deploy_interrupt(), json{{"interrupt_id", "i-7"}, {"type", "ok"}}, "", error));

  auto edit = smws::expand_decision(deploy_interrupt(),
                                    json{{"interrupt_id", "i-7"}, {"type", "edit"}, {"decided_by", "me"},
                                         {"edited_action", {{"name", "deploy"}, {"args", {{"env", "dev"}}}}}},
                                    "bob", error);
  REQUIRE(edit);
  CHECK((*edit)["decided_by"] == "me");
  CHECK((*edit)["decisions"][0]["edited_action"]["args"]["env"] == "dev");
  HitlTable table;
  REQUIRE(table.on_interrupt(deploy_interrupt(), 0).ok);
  CHECK(table.on_decision(*edit, "c", 1).accepted());
}

TEST_CASE("the audit log holds one fsynced NDJSON line per record", "[hitl]") {
  smws::test::TempDir dir;
  std::string path = dir.file("audit.ndjson");
  {
    smws::AuditLog audit;
    std::string error;
    REQUIRE(audit.open(path, error));
    REQUIRE(audit.append(deploy_interrupt(), error));
    REQUIRE(audit.append(approve(), error));
  }
  {
    smws::AuditLog reopened;  // appends, never truncates
    std::string error;
    REQUIRE(reopened.open(path, error));
    REQUIRE(reopened.append(json{{"type", "decision"}, {"timed_out", true}}, error));
  }
  std::ifstream in(path);
  std::string line;
  std::vector<json> records;
  while (std::getline(in, line)) records.push_back(json::parse(line));
  REQUIRE(records.size() == 3);
  CHECK(records[0]["type"] == "interrupt");
  CHECK(records[1]["interrupt_id"] == "i-7");
  CHECK(records[2]["timed_out"] == true);
  CHECK(records[0]["logged_at"].is_number());

  smws::AuditLog nowhere;
  std::string error;
  CHECK_FALSE(nowhere.open("/nonexistent-dir/audit.ndjson", error));
  CHECK(error.find("/nonexistent-dir/audit.ndjson") != std::string::npos);
  CHECK_FALSE(nowhere.append(json::object(), error));
}

TEST_CASE("a reply datagram reaches a bound socket and a vanished one is an error value", "[hitl]") {
  smws::test::TempDir dir;
  std::string path = dir.file("r.sock");
  int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);

  CHECK(smws::send_reply_datagram(path, R"({"type":"decision"})").empty());
  char buffer[256];
  ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  REQUIRE(n > 0);
  CHECK(std::string(buffer, n) == R"({"type":"decision"})");

  ::close(fd);
  ::unlink(path.c_str());
  std::string error = smws::send_reply_datagram(path, "x");
  CHECK(error.find(path) != std::string::npos);
  CHECK_FALSE(smws::send_reply_datagram(std::string(200, 'a'), "x").empty());
}

TEST_CASE("allowed decisions come from the first review_config naming the action", "[hitl]") {
  json interrupt = two_action_interrupt();
  interrupt["review_configs"].push_back({{"action_name", "drop_table"}, {"allowed_decisions", {"approve"}}});
  CHECK(smws::allowed_decisions(interrupt, "drop_table") == std::vector<std::string>{"reject"});
  CHECK(smws::allowed_decisions(interrupt, "deploy") == std::vector<std::string>{"approve", "edit", "reject"});
  // A malformed interrupt does not throw: everything is allowed, the relay decides.
  CHECK(smws::allowed_decisions(json::array(), "x").size() == 3);
}

TEST_CASE("a decision's exit code: 0 approve or edit, 1 any reject, 75 timed out, 65 unreadable", "[hitl]") {
  using smws::decision_exit_code;
  CHECK(decision_exit_code(approve()).code == smws::kExitOk);
  CHECK(decision_exit_code(approve()).message == "approved");
  json edit = {{"type", "decision"}, {"decisions", {{{"type", "edit"}, {"edited_action", json::object()}}}}};
  CHECK(decision_exit_code(edit).code == smws::kExitOk);

  json mixed = {{"type", "decision"},
                {"decisions", {{{"type", "approve"}}, {{"type", "reject"}, {"message", "not on a Friday"}}}}};
  auto rejected = decision_exit_code(mixed);
  CHECK(rejected.code == smws::kExitNegative);
  CHECK(rejected.message == "rejected: not on a Friday");

  json timed_out = {{"type", "decision"}, {"timed_out", true}, {"decisions", {{{"type", "reject"}}}}};
  CHECK(decision_exit_code(timed_out).code == smws::kExitTempFail);
  CHECK(decision_exit_code(timed_out).message.find("timed out") != std::string::npos);

  CHECK(decision_exit_code(json{{"type", "decision"}}).code == smws::kExitDataErr);
  CHECK(decision_exit_code(json{{"type", "decision"}, {"decisions", json::array()}}).code == smws::kExitDataErr);
  auto unknown = decision_exit_code(json{{"decisions", {{{"type", "maybe"}}, {{"type", "approve"}}}}});
  CHECK(unknown.code == smws::kExitDataErr);
  CHECK(unknown.message.find("'maybe'") != std::string::npos);
  // timed_out must be a boolean true to count.
  CHECK(decision_exit_code(json{{"timed_out", "yes"}, {"decisions", {{{"type", "approve"}}}}}).code == smws::kExitOk);
}

namespace {

std::vector<json> audit_records(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<json> records;
  while (std::getline(in, line)) records.push_back(json::parse(line));
  return records;
}

}  // namespace

TEST_CASE("an audit log on a full device refuses each record with the path and errno text",
          "[hitl][audit]") {
  smws::AuditLog audit;
  std::string error;
  REQUIRE(audit.open("/dev/full", error));
  CHECK_FALSE(audit.append(approve(), error));
  CHECK(error == "audit file /dev/full: No space left on device");
  CHECK_FALSE(audit.append(approve(), error));  // and again: nothing sticks
}

TEST_CASE("an audit log whose directory is removed refuses records, then recovers when it is back",
          "[hitl][audit]") {
  smws::test::TempDir dir;
  std::string logs = dir.file("logs");
  REQUIRE(std::filesystem::create_directory(logs));
  std::string path = logs + "/audit.ndjson";
  smws::AuditLog audit;
  std::string error;
  REQUIRE(audit.open(path, error));
  REQUIRE(audit.append(approve("i-1"), error));
  // The open descriptor would still take writes (into a deleted inode):
  // the record must not vanish that way.
  std::filesystem::remove_all(logs);
  CHECK_FALSE(audit.append(approve("i-2"), error));
  CHECK(error == "audit file " + path + ": No such file or directory");
  REQUIRE(std::filesystem::create_directory(logs));
  REQUIRE(audit.append(approve("i-3"), error));
  auto records = audit_records(path);
  REQUIRE(records.size() == 1);  // a new file: the old one went with its directory
  CHECK(records[0]["interrupt_id"] == "i-3");
}

TEST_CASE("an audit log renamed away (rotated) goes on in a new file at its path", "[hitl][audit]") {
  smws::test::TempDir dir;
  std::string path = dir.file("audit.ndjson");
  smws::AuditLog audit;
  std::string error;
  REQUIRE(audit.open(path, error));
  REQUIRE(audit.append(approve("i-1"), error));
  std::filesystem::rename(path, path + ".1");
  REQUIRE(audit.append(approve("i-2"), error));
  CHECK(audit_records(path + ".1").size() == 1);
  auto records = audit_records(path);
  REQUIRE(records.size() == 1);
  CHECK(records[0]["interrupt_id"] == "i-2");
}

TEST_CASE("an audit log behind a symlink follows it to a full device and back", "[hitl][audit]") {
  smws::test::TempDir dir;
  std::string file = dir.file("real.ndjson"), link = dir.file("audit.ndjson");
  std::filesystem::create_symlink(file, link);
  smws::AuditLog audit;
  std::string error;
  REQUIRE(audit.open(link, error));
  REQUIRE(audit.append(approve("i-1"), error));
  std::filesystem::remove(link);
  std::filesystem::create_symlink("/dev/full", link);
  CHECK_FALSE(audit.append(approve("i-2"), error));
  CHECK(error == "audit file " + link + ": No space left on device");
  std::filesystem::remove(link);
  std::filesystem::create_symlink(file, link);
  REQUIRE(audit.append(approve("i-3"), error));
  auto records = audit_records(file);
  REQUIRE(records.size() == 2);
  CHECK(records[0]["interrupt_id"] == "i-1");
  CHECK(records[1]["interrupt_id"] == "i-3");
}

TEST_CASE("an audit log made read-only refuses records for a user whom modes bind", "[hitl][audit]") {
  if (::geteuid() == 0) {
    WARN("running as root: file modes do not stop root; check skipped");
    return;
  }
  smws::test::TempDir dir;
  std::string path = dir.file("audit.ndjson");
  smws::AuditLog audit;
  std::string error;
  REQUIRE(audit.open(path, error));
  std::filesystem::permissions(path, std::filesystem::perms::owner_read);
  CHECK_FALSE(audit.append(approve(), error));
  CHECK(error == "audit file " + path + ": Permission denied");
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  CHECK(audit.append(approve(), error));
}
