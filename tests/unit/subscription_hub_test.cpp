// SPDX-License-Identifier: Apache-2.0
// RelayHub with subscription filters: the filtered snapshot, history and
// ?since= replay, and --machine-history merged into them.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/relay_hub.h"
#include "smws/subscription.h"

using smws::Filter;
using smws::HubOptions;
using smws::Payload;
using smws::RelayHub;
using nlohmann::json;

namespace {

constexpr double kNow = 1700000000.5;

std::vector<json> parse_all(const std::vector<Payload>& ps) {
  std::vector<json> out;
  for (const auto& p : ps) out.push_back(json::parse(*p));
  return out;
}

Filter machines(std::vector<std::string> m) {
  Filter f;
  f.machines = std::move(m);
  return f;
}

// n of every message after the snapshot(s); -1 for messages without one.
std::vector<int> ns(const std::vector<json>& msgs) {
  std::vector<int> out;
  for (const auto& m : msgs) {
    if (m["type"] == "initial" || m["type"] == "gap") continue;
    out.push_back(m.value("n", -1));
  }
  return out;
}

void feed(RelayHub& hub, const std::string& machine, int n) {
  REQUIRE(hub.ingest(R"({"type":"log","machine_id":")" + machine + R"(","n":)" +
                         std::to_string(n) + "}",
                     kNow)
              .ok());
}

}  // namespace

TEST_CASE("ingest reports the decoded machine_id of any event type", "[subscription]") {
  RelayHub hub;
  auto r = hub.ingest(R"({"type":"log","machine_id":"w-1"})", kNow);
  REQUIRE(r.machine);
  CHECK(*r.machine == "w-1");
  r = hub.ingest(R"({"type":"log","machine_id":"w\u002d2"})", kNow);
  REQUIRE(r.machine);
  CHECK(*r.machine == "w-2");
  r = hub.ingest(R"({"type":"log","machine_id":7})", kNow);
  CHECK_FALSE(r.machine);
  r = hub.ingest(R"({"type":"log"})", kNow);
  CHECK_FALSE(r.machine);
  r = hub.ingest(R"({"typ\u0065":"log","machine_id":"w-3"})", kNow);  // the slow path
  REQUIRE(r.ok());
  REQUIRE(r.machine);
  CHECK(*r.machine == "w-3");
}

TEST_CASE("a filtered snapshot lists only the machines its machine globs show", "[subscription]") {
  RelayHub hub;
  for (const char* m : {"w-1", "w-2", "db-1"}) {
    REQUIRE(hub.ingest(std::string(R"({"type":"state_change","machine_id":")") + m +
                           R"(","state":"up"})",
                       kNow)
                .ok());
  }
  hub.set_pending_provider([](double) { return std::string(R"([{"interrupt_id":"i"}])"); });
  const Filter w = machines({"w-*"});
  auto snap = json::parse(*hub.snapshot(kNow, &w));
  CHECK(snap["machines"].size() == 2);
  CHECK(snap["pending"].size() == 1);
  Filter no_hitl;
  no_hitl.hitl = false;
  snap = json::parse(*hub.snapshot(kNow, &no_hitl));
  CHECK(snap["machines"].size() == 3);
  CHECK(snap["pending"] == json::array());
  CHECK(json::parse(*hub.snapshot(kNow))["machines"].size() == 3);  // the cached one is intact
}

TEST_CASE("a filtered connect replays matching history and machine history once each",
          "[subscription]") {
  HubOptions o;
  o.history = 4;
  o.machine_history = 3;
  RelayHub hub(o);
  for (int n = 1; n <= 8; ++n) feed(hub, n % 2 ? "a" : "b", n);
  // --history holds 5..8; a's machine history holds 3, 5, 7.
  const Filter a = machines({"a"});
  auto got = parse_all(hub.on_connect(std::nullopt, kNow, &a));
  CHECK(got[0]["type"] == "initial");
  CHECK(ns(got) == std::vector<int>{3, 5, 7});
  got = parse_all(hub.on_connect(std::nullopt, kNow));
  CHECK(ns(got) == std::vector<int>{5, 6, 7, 8});  // unfiltered: --history only
  Filter types;
  types.types = {"other"};
  got = parse_all(hub.on_connect(std::nullopt, kNow, &types));
  CHECK(ns(got).empty());
}

TEST_CASE("since with a filter resumes with only the matching events", "[subscription]") {
  HubOptions o;
  o.history = 100;
  o.seq = true;
  RelayHub hub(o);
  for (int n = 1; n <= 6; ++n) feed(hub, n % 2 ? "a" : "b", n);
  const Filter a = machines({"a"});
  auto got = parse_all(hub.on_connect(2, kNow, &a));
  CHECK(ns(got) == std::vector<int>{3, 5});
  CHECK(got[0]["seq"] == 3);
  CHECK(got[1]["seq"] == 5);
}

TEST_CASE("a gap is still announced to a filtered client", "[subscription]") {
  HubOptions o;
  o.history = 2;
  o.seq = true;
  RelayHub hub(o);
  for (int n = 1; n <= 6; ++n) feed(hub, n % 2 ? "a" : "b", n);
  const Filter b = machines({"b"});
  auto got = parse_all(hub.on_connect(1, kNow, &b));
  REQUIRE(got.size() >= 2);
  CHECK(got[0]["type"] == "gap");
  CHECK(got[0]["from"] == 2);
  CHECK(got[0]["to"] == 4);
  CHECK(got[1]["type"] == "initial");
  CHECK(ns(got) == std::vector<int>{6});
}

TEST_CASE("on_subscribe answers with the view's snapshot and its machines' history",
          "[subscription]") {
  HubOptions o;
  o.machine_history = 2;
  RelayHub hub(o);
  for (int n = 1; n <= 6; ++n) feed(hub, n % 3 == 0 ? "c" : "d", n);
  auto got = parse_all(hub.on_subscribe(machines({"c", "d"}), kNow));
  CHECK(got[0]["type"] == "initial");
  CHECK(ns(got) == std::vector<int>{3, 4, 5, 6});
  got = parse_all(hub.on_subscribe(Filter{}, kNow));
  CHECK(got.size() == 1);
  CHECK(hub.machine_history().machines() == 2);
}

TEST_CASE("subscribe is its own client message, not forwarded", "[subscription]") {
  auto m = RelayHub::classify_client_message(R"({"type":"subscribe","machines":["a"]})");
  CHECK(m.kind == smws::ClientMessage::Kind::kSubscribe);
  CHECK(m.json["machines"][0] == "a");
}
