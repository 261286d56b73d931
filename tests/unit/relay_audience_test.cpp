// SPDX-License-Identifier: Apache-2.0
// relay::Audience without sockets: each client's first messages exactly
// once, filters from the query and --route, subscribe, and fan-out to the
// clients a filter selects, read through RecordingIo.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "relay_test_io.h"
#include "smws/relay/audience.h"

using nlohmann::json;
using smws::HitlOptions;
using smws::HubOptions;
using smws::MutexLock;
using smws::RelayHub;
using smws::relay::Audience;
using smws::relay::Outgoing;
using smws::relay::RelayState;
using smws::test::RecordingIo;

namespace {

struct Fixture {
  RecordingIo io;
  RelayState state{RelayHub(HubOptions{}), HitlOptions{300, 100}};
  Audience audience{&state, &io, false};

  void open(smws::net::ClientId id, std::vector<std::pair<std::string, std::string>> query = {},
            std::string path = "/ws/events") {
    smws::net::ClientInfo c;
    c.id = id;
    c.peer = "127.0.0.1:" + std::to_string(6000 + id);
    c.request.path = std::move(path);
    c.request.query = std::move(query);
    audience.on_open(c, 1.7e9);
  }
  // A stdin event as the stdin thread leaves it for the loop.
  void post(const std::string& machine, const std::string& state_name) {
    json e = {{"type", "state_change"}, {"machine_id", machine}, {"state", state_name}};
    MutexLock lock(&state.mu);
    smws::IngestResult r = state.hub.ingest(e.dump(), 1.7e9, 1);
    REQUIRE(r.ok());
    state.inbox.push_back(Outgoing{smws::net::make_text_frame(*r.payload), r.type, r.machine});
  }
  std::vector<Outgoing> take_inbox() {
    std::vector<Outgoing> out;
    MutexLock lock(&state.mu);
    out.swap(state.inbox);
    return out;
  }
};

}  // namespace

TEST_CASE("an event the stdin thread posted before a client joined reaches it once, in its snapshot",
          "[relay][audience]") {
  Fixture f;
  f.open(1);
  f.post("m1", "busy");
  f.open(2);  // takes the inbox: client 1 gets the event live, client 2 in its snapshot
  REQUIRE(f.io.broadcasts.size() == 1);
  CHECK(f.io.broadcasts[0]["machine_id"] == "m1");
  REQUIRE(f.io.joined.size() == 2);
  const json& snap = f.io.joined[1].second.at(0);
  CHECK(snap["type"] == "initial");
  CHECK(snap.dump().find("\"m1\"") != std::string::npos);
  CHECK(f.take_inbox().empty());
}

TEST_CASE("a filtered client gets only what its filter takes, and a bad query keeps the default view",
          "[relay][audience]") {
  Fixture f;
  f.open(1, {{"machine", "m1"}});
  f.open(2);
  f.open(3, {{"hitl", "maybe"}});
  REQUIRE(f.io.joined.size() == 3);
  CHECK(f.io.joined[2].second.at(0)["type"] == "error");  // then its snapshot
  CHECK(f.audience.subscribed() == 1);

  f.post("m2", "idle");
  f.audience.fan_out(f.take_inbox());
  // Not everyone takes it: sent one by one to the clients selected.
  CHECK(f.io.broadcasts.empty());
  std::vector<smws::net::ClientId> got;
  for (const auto& s : f.io.sent) got.push_back(s.id);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<smws::net::ClientId>{2, 3});
  CHECK(f.audience.filtered_out() == 1);
}

TEST_CASE("a --route gives a path its filter, and subscribe changes a client's view", "[relay][audience]") {
  Fixture f;
  smws::Filter only_m1;
  json sub_m1 = {{"type", "subscribe"}, {"machines", {"m1"}}};
  REQUIRE(smws::apply_subscribe(sub_m1, &only_m1).ok());
  f.audience.set_routes({{"/ws/m1", only_m1}});
  f.open(1, {}, "/ws/m1");
  CHECK(f.audience.subscribed() == 1);

  f.post("m2", "idle");
  f.audience.fan_out(f.take_inbox());
  CHECK(f.io.sent.empty());
  CHECK(f.io.broadcasts.empty());

  json sub_m2 = {{"type", "subscribe"}, {"machines", {"m2"}}};
  f.audience.subscribe(1, sub_m2, 1.7e9);
  REQUIRE_FALSE(f.io.sent.empty());  // its new view
  f.io.sent.clear();
  f.post("m2", "busy");
  f.audience.fan_out(f.take_inbox());
  REQUIRE(f.io.sent.size() == 1);
  CHECK(f.io.sent[0].message["state"] == "busy");
}

TEST_CASE("a client that closes before the group serves is never greeted", "[relay][audience]") {
  Fixture f;
  f.audience.hold_new_clients();
  f.open(1);
  f.open(2);
  f.audience.on_close(1);
  f.audience.serve(1.7e9);
  REQUIRE(f.io.joined.size() == 1);
  CHECK(f.io.joined[0].first == 2);
  CHECK(f.audience.peer(2) == "127.0.0.1:6002");
  CHECK(f.audience.peer(1).empty());
}
