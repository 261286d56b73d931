// SPDX-License-Identifier: Apache-2.0
// relay::GroupMember without Redis: the group's load and entries as the
// stream would hand them over, read through RecordingIo. The stream is
// built but never started, so nothing connects.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "relay_test_io.h"
#include "smws/clock.h"
#include "smws/relay/audience.h"
#include "smws/relay/decisions.h"
#include "smws/relay/group_member.h"

using nlohmann::json;
using smws::HitlOptions;
using smws::HubOptions;
using smws::MutexLock;
using smws::RelayHub;
using smws::redis::GroupSnapshot;
using smws::relay::Audience;
using smws::relay::Decisions;
using smws::relay::GroupMember;
using smws::relay::RelayOptions;
using smws::relay::RelayState;
using smws::test::RecordingIo;

namespace {

HubOptions group_hub() {
  HubOptions h;
  h.seq = true;
  return h;
}

struct GroupRelay {
  explicit GroupRelay(bool audit = false)
      : decisions(&state, &io, &audience, audit),
        member(&state, &io, &audience, &decisions, options, url(), [this] { return make_hub(); },
               smws::monotonic_seconds()) {
    MutexLock lock(&state.mu);
    state.hub = make_hub();
  }
  // As Relay makes it: stdin interrupts go through the member's check.
  RelayHub make_hub() {
    RelayHub hub(group_hub());
    hub.set_interceptor("interrupt", [this](std::string_view event, double) {
      member.assert_locked();
      return member.check_interrupt(event);
    });
    return hub;
  }
  static smws::redis::RedisUrl url() {
    smws::redis::RedisUrl u;
    REQUIRE(smws::redis::parse_url("redis://127.0.0.1:1", &u).ok());
    return u;
  }
  void open(smws::net::ClientId id) {
    smws::net::ClientInfo c;
    c.id = id;
    c.peer = "127.0.0.1:" + std::to_string(5000 + id);
    audience.on_open(c, 1.7e9);
  }
  bool pending(const std::string& id) {
    MutexLock lock(&state.mu);
    return state.hitl.is_pending(id);
  }
  uint64_t last_seq() {
    MutexLock lock(&state.mu);
    return state.hub.last_seq();
  }

  RelayOptions options;
  RecordingIo io;
  RelayState state{RelayHub(group_hub()), HitlOptions{300, 100}};
  Audience audience{&state, &io, true};
  Decisions decisions;
  GroupMember member;
};

std::string interrupt_text(const std::string& id, const std::string& reply_to = "") {
  json j = {{"type", "interrupt"},
            {"interrupt_id", id},
            {"action_requests", {{{"name", "deploy"}, {"args", json::object()}}}},
            {"review_configs", {{{"action_name", "deploy"}, {"allowed_decisions", {"approve", "reject"}}}}},
            {"timeout", 60}};
  if (!reply_to.empty()) j["reply_to"] = reply_to;
  return j.dump();
}

GroupSnapshot snapshot(const std::string& epoch, uint64_t last_seq) {
  GroupSnapshot s;
  s.epoch = epoch;
  s.last_seq = last_seq;
  return s;
}

}  // namespace

TEST_CASE("a group relay holds new clients until the group's state is loaded", "[relay][group]") {
  GroupRelay g;
  CHECK_FALSE(g.audience.serving());
  g.open(1);
  CHECK(g.io.joined.empty());

  GroupSnapshot s = snapshot("e1", 41);
  s.recent.push_back({41, R"({"type":"state_change","machine_id":"m1","state":"busy","seq":41})"});
  g.member.on_loaded(s, /*first=*/true);
  CHECK(g.audience.serving());
  CHECK(g.last_seq() == 41);
  REQUIRE(g.io.joined.size() == 1);
  CHECK(g.io.joined[0].first == 1);
  const json& first = g.io.joined[0].second.at(0);
  CHECK(first["type"] == "initial");
  CHECK(first["machines"].dump().find("m1") != std::string::npos);
  CHECK(g.io.broadcasts.empty());  // a first load is no resync
}

TEST_CASE("entries are applied in order and fanned out, and our interrupt's decision is printed and answered",
          "[relay][group]") {
  GroupRelay g;
  g.member.on_loaded(snapshot("e1", 0), true);
  g.open(1);
  // Our interrupt, as stdin hands it to the hub: checked and given a group id.
  {
    MutexLock lock(&g.state.mu);
    auto r = g.state.hub.check(interrupt_text("mine", "/tmp/mine.sock"), 1.7e9, 1);
    REQUIRE(r.ok());
    REQUIRE(g.state.origin.count("mine") == 1);
  }
  g.member.on_entries({{1, interrupt_text("mine", "/tmp/mine.sock")}, {2, interrupt_text("theirs")}});
  CHECK(g.pending("mine"));
  CHECK(g.pending("theirs"));
  REQUIRE(g.io.broadcasts.size() == 2);
  CHECK(g.io.broadcasts[0]["seq"] == 1);
  CHECK(g.io.broadcasts[1]["seq"] == 2);

  json decision = {{"type", "decision"}, {"interrupt_id", "mine"}, {"decisions", {{{"type", "approve"}}}}};
  json other = {{"type", "decision"}, {"interrupt_id", "theirs"}, {"decisions", {{{"type", "reject"}}}}};
  g.member.on_entries({{3, decision.dump()}, {4, other.dump()}});
  CHECK_FALSE(g.pending("mine"));
  CHECK_FALSE(g.pending("theirs"));
  CHECK(g.io.broadcasts.size() == 4);
  // Only the relay that read the interrupt prints and answers it.
  REQUIRE(g.io.printed.size() == 1);
  CHECK(g.io.printed[0]["interrupt_id"] == "mine");
  REQUIRE(g.io.replies.size() == 1);
  CHECK(g.io.replies[0].first == "/tmp/mine.sock");
  MutexLock lock(&g.state.mu);
  CHECK(g.state.origin.empty());
}

TEST_CASE("with --audit our interrupt's group decision is printed only once recorded here", "[relay][group]") {
  GroupRelay g(/*audit=*/true);
  g.member.on_loaded(snapshot("e1", 0), true);
  {
    MutexLock lock(&g.state.mu);
    REQUIRE(g.state.hub.check(interrupt_text("mine", "/tmp/m.sock"), 1.7e9, 1).ok());
  }
  g.member.on_entries({{1, interrupt_text("mine", "/tmp/m.sock")}});
  REQUIRE(g.io.records.size() == 1);  // the interrupt, recorded by its origin
  json decision = {{"type", "decision"}, {"interrupt_id", "mine"}, {"decisions", {{{"type", "approve"}}}}};
  g.member.on_entries({{2, decision.dump()}});
  REQUIRE(g.io.records.size() == 2);
  CHECK(g.io.printed.empty());
  g.io.post_outcome(&g.state, 1, "audit file a: No space left on device");
  g.decisions.handle_outcomes(0, 0);
  CHECK(g.io.printed.empty());
  g.member.tick(smws::monotonic_seconds());  // retried
  REQUIRE(g.io.records.size() == 3);
  g.io.post_outcome(&g.state, 2);
  g.decisions.handle_outcomes(0, 0);
  CHECK(g.io.printed.size() == 1);
  CHECK(g.io.replies.size() == 1);
}

TEST_CASE("a resync tells every client with a gap, then gives each the group's state", "[relay][group]") {
  GroupRelay g;
  g.member.on_loaded(snapshot("e1", 0), true);
  g.open(1);
  g.open(2);
  g.member.on_entries({{1, R"({"type":"state_change","machine_id":"m1","state":"a"})"}});
  g.io.broadcasts.clear();

  // Redis lost its data: a new epoch, and the group's seq went on from 5.
  g.member.on_loaded(snapshot("e2", 5), false);
  REQUIRE(g.io.broadcasts.size() == 2);
  CHECK(g.io.broadcasts[0] == json{{"type", "gap"}, {"reason", "resync"}, {"epoch", "e2"}, {"from", 2}, {"to", 5}});
  CHECK(g.io.broadcasts[1]["type"] == "initial");
  CHECK(g.last_seq() == 5);
}

TEST_CASE("a stdin interrupt gets a group-unique id and a duplicate pending id is refused", "[relay][group]") {
  GroupRelay g;
  g.member.on_loaded(snapshot("e1", 0), true);
  json no_id = json::parse(interrupt_text("x"));
  no_id.erase("interrupt_id");
  {
    MutexLock lock(&g.state.mu);
    auto r = g.state.hub.check(no_id.dump(), 1.7e9, 1);
    REQUIRE(r.ok());
    std::string id = json::parse(*r.payload)["interrupt_id"];
    CHECK(id.rfind("i-", 0) == 0);
    CHECK(id.size() > 4);
    CHECK(g.state.last_interrupt_id == id);
  }
  // Made pending through the stream, it cannot be sent again with that id.
  g.member.on_entries({{1, interrupt_text("dup")}});
  MutexLock lock(&g.state.mu);
  auto again = g.state.hub.check(interrupt_text("dup"), 1.7e9, 2);
  CHECK_FALSE(again.ok());
  CHECK(again.error.find("already pending") != std::string::npos);
}
