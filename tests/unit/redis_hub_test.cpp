// SPDX-License-Identifier: Apache-2.0
// The RelayHub and HitlTable entry points a relay in a group uses
// (ws-relay --redis): check without commit, apply with the group's seq,
// holding more for ?since= than --history replays, deciding elsewhere.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "smws/hitl.h"
#include "smws/relay_hub.h"

using smws::HubOptions;
using smws::RelayHub;

TEST_CASE("check validates a line without numbering, holding or tabling it", "[redis][hub]") {
  RelayHub hub(HubOptions{0, true});
  auto r = hub.check(R"({"type":"state_change","machine_id":"m","state":"up"})", 1.0, 1);
  REQUIRE(r.ok());
  CHECK(*r.payload == R"({"type":"state_change","machine_id":"m","state":"up"})");
  CHECK(hub.last_seq() == 0);
  CHECK(hub.machines() == 0);
  CHECK(hub.events_in() == 1);
  auto bad = hub.check("{nope", 1.0, 2);
  CHECK(bad.status == smws::IngestResult::Status::kInvalid);
  CHECK(hub.invalid_lines() == 1);
}

TEST_CASE("apply stamps the group's seq and ?since= resumes from the held events", "[redis][hub]") {
  HubOptions options;
  options.history = 1;
  options.seq = true;
  options.hold = 5;
  RelayHub hub(options);
  for (uint64_t seq = 10; seq <= 16; ++seq) {
    auto p = hub.apply(seq, R"({"type":"e"})", 1.0);
    CHECK(nlohmann::json::parse(*p)["seq"] == seq);
  }
  CHECK(hub.last_seq() == 16);
  // A new client: snapshot + --history (1), not all five held.
  auto fresh = hub.on_connect(std::nullopt, 1.0);
  REQUIRE(fresh.size() == 2);
  CHECK(nlohmann::json::parse(*fresh[1])["seq"] == 16);
  // ?since=12: the five held (12..16) cover it.
  auto resumed = hub.on_connect(12, 1.0);
  REQUIRE(resumed.size() == 4);
  CHECK(nlohmann::json::parse(*resumed[0])["seq"] == 13);
  // ?since=10: 11 is gone.
  auto gap = hub.on_connect(10, 1.0);
  CHECK(nlohmann::json::parse(*gap[0]) == nlohmann::json::parse(R"({"type":"gap","from":11,"to":11})"));
}

TEST_CASE("apply takes the scan path and the DOM path to the same bytes and table", "[redis][hub]") {
  // The same events, one relay applying them as they are, another with the
  // machine_id escaped (which needs the DOM): equal tables and payloads.
  RelayHub fast(HubOptions{10, true}), slow(HubOptions{10, true});
  RelayHub::Applied a;
  auto p = fast.apply(1, R"({"type":"state_change","machine_id":"m","state":"a","timestamp":2})", 1.0, &a);
  CHECK(*p == R"({"seq":1,"type":"state_change","machine_id":"m","state":"a","timestamp":2})");
  CHECK(a.type == "state_change");
  CHECK(a.machine == std::optional<std::string>("m"));
  RelayHub::Applied b;
  slow.apply(1, R"({"type":"state_change","machine_id":"\u006d","state":"a","timestamp":2})", 1.0, &b);
  CHECK(b.machine == std::optional<std::string>("m"));
  auto fs = nlohmann::json::parse(*fast.snapshot(9.0));
  auto ss = nlohmann::json::parse(*slow.snapshot(9.0));
  CHECK(fs["machines"] == ss["machines"]);
  CHECK(fs["machines"][0]["current_state"] == "a");
  // An event with a "seq" of its own gets the group's instead, once.
  auto q = fast.apply(7, R"({"type":"x","seq":99})", 1.0, &a);
  CHECK(nlohmann::json::parse(*q)["seq"] == 7);
  CHECK(q->find("99") == std::string::npos);
  CHECK(a.type == "x");
  CHECK_FALSE(a.machine);
  // Not an event (another writer's entry): nothing, and nothing held.
  CHECK(fast.apply(8, "[1,2]", 1.0) == nullptr);
  CHECK(fast.history_size() == 2);
}

TEST_CASE("table rebuilds a machine without numbering or holding", "[redis][hub]") {
  RelayHub hub(HubOptions{10, true});
  hub.table(R"({"type":"state_change","machine_id":"m","state":"a"})", 1.0);
  hub.table(R"({"type":"state_change","machine_id":"m","state":"b","timestamp":5})", 1.0);
  hub.set_last_seq(40);
  CHECK(hub.machines() == 1);
  CHECK(hub.history_size() == 0);
  auto snap = nlohmann::json::parse(*hub.snapshot(9.0));
  CHECK(snap["seq"] == 40);
  CHECK(snap["machines"][0]["current_state"] == "b");
  CHECK(snap["machines"][0]["previous_state"] == "a");
  CHECK(snap["machines"][0]["last_activity"] == 5);
}

TEST_CASE("a decision checked without resolving stays pending until the group resolves it",
          "[redis][hitl]") {
  smws::HitlTable table;
  auto r = table.on_interrupt(
      nlohmann::json::parse(R"({"type":"interrupt","interrupt_id":"i-1","action_requests":[{"name":"x"}]})"),
      0.0);
  REQUIRE(r.ok);
  auto d = nlohmann::json::parse(R"({"type":"decision","interrupt_id":"i-1","decisions":[{"type":"approve"}]})");
  auto checked = table.on_decision(d, "127.0.0.1:1", 1.0, /*resolve=*/false);
  REQUIRE(checked.accepted());
  CHECK(table.is_pending("i-1"));
  CHECK(table.resolve_elsewhere("i-1", false));
  CHECK_FALSE(table.is_pending("i-1"));
  CHECK_FALSE(table.resolve_elsewhere("i-1", false));
  auto late = table.on_decision(d, "127.0.0.1:1", 2.0);
  REQUIRE_FALSE(late.accepted());
  CHECK(late.error["reason"] == "already decided");
}
