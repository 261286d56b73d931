// SPDX-License-Identifier: Apache-2.0
#include "smws/subscription.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

using smws::Status;
using smws::apply_subscribe;
using smws::Filter;
using smws::filter_from_query;
using smws::glob_match;
using smws::HeldEvent;
using smws::MachineHistory;
using smws::parse_glob_list;
using smws::parse_route;
using smws::parse_route_filter;
using smws::Route;
using smws::SubscriberId;
using smws::SubscriptionIndex;
using nlohmann::json;

namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

Filter filter(std::vector<std::string> types, std::vector<std::string> machines,
              bool hitl = true) {
  Filter f;
  f.types = std::move(types);
  f.machines = std::move(machines);
  f.hitl = hitl;
  return f;
}

std::vector<SubscriberId> select(const SubscriptionIndex& index, const std::string& type,
                                 const std::string* machine) {
  std::vector<SubscriberId> out;
  index.select(type, machine, &out);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<SubscriberId> select(const SubscriptionIndex& index, const std::string& type,
                                 const std::string& machine) {
  return select(index, type, &machine);
}

smws::Payload text(const std::string& s) { return std::make_shared<const std::string>(s); }

std::vector<uint64_t> seqs(const std::vector<HeldEvent>& held) {
  std::vector<uint64_t> out;
  for (const auto& h : held) out.push_back(h.seq);
  return out;
}

}  // namespace

// --- globs -------------------------------------------------------------------

TEST_CASE("a glob's star matches any run of characters, the empty one too", "[subscription]") {
  CHECK(glob_match("queue_*", "queue_update"));
  CHECK(glob_match("queue_*", "queue_"));
  CHECK_FALSE(glob_match("queue_*", "queue"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("*-1", "worker-1"));
  CHECK_FALSE(glob_match("*-1", "worker-10"));
  CHECK(glob_match("w*r*-1*", "worker-10"));
  CHECK(glob_match("a*b*c", "aXbYbZc"));
  CHECK_FALSE(glob_match("a*b*c", "aXbYbZ"));
  CHECK(glob_match("**", "x"));
}

TEST_CASE("without a star a glob is an exact name, and question marks and brackets are literal", "[subscription]") {
  CHECK(glob_match("worker-1", "worker-1"));
  CHECK_FALSE(glob_match("worker-1", "worker-12"));
  CHECK_FALSE(glob_match("worker-1", "worker-"));
  CHECK(glob_match("a?b", "a?b"));
  CHECK_FALSE(glob_match("a?b", "aXb"));
  CHECK(glob_match("[x]", "[x]"));
  CHECK_FALSE(glob_match("", "a"));
  CHECK(glob_match("", ""));
}

TEST_CASE("a glob with many stars against a long text stays linear", "[subscription]") {
  // The recursive matcher's worst case: exponential there, quick here.
  const std::string pattern = "*a*a*a*a*a*a*a*a*a*a*b";
  const std::string text(20000, 'a');
  CHECK_FALSE(glob_match(pattern, text));
}

// --- filters -----------------------------------------------------------------

TEST_CASE("a filter matches any listed type and any listed machine", "[subscription]") {
  Filter f = filter({"queue_*", "state_change"}, {"w-1", "db-*"});
  const std::string w1 = "w-1", db7 = "db-7", w2 = "w-2";
  CHECK(f.matches("state_change", &w1));
  CHECK(f.matches("queue_update", &db7));
  CHECK_FALSE(f.matches("state_change", &w2));
  CHECK_FALSE(f.matches("log", &w1));
  CHECK_FALSE(f.matches("state_change", nullptr));  // no machine_id: only without machines
}

TEST_CASE("an event without machine_id matches only a filter without machines", "[subscription]") {
  CHECK(filter({"tick"}, {}).matches("tick", nullptr));
  CHECK_FALSE(filter({"tick"}, {"*"}).matches("tick", nullptr));
  CHECK(Filter{}.matches("anything", nullptr));
}

TEST_CASE("HITL messages pass every filter unless hitl is off", "[subscription]") {
  Filter f = filter({"queue_update"}, {"w-1"});
  CHECK(f.matches("interrupt", nullptr));
  CHECK(f.matches("decision", nullptr));
  f.hitl = false;
  CHECK_FALSE(f.matches("interrupt", nullptr));
  CHECK_FALSE(Filter{{}, {}, false}.matches("decision", nullptr));
  CHECK(Filter{{}, {}, false}.matches("state_change", nullptr));
}

TEST_CASE("the snapshot is narrowed by machines only", "[subscription]") {
  Filter f = filter({"queue_update"}, {"w-*"});
  CHECK(f.shows_machine("w-3"));
  CHECK_FALSE(f.shows_machine("db-1"));
  CHECK(filter({"queue_update"}, {}).shows_machine("db-1"));  // a type filter hides no machine
}

// --- parsing -----------------------------------------------------------------

TEST_CASE("a glob list splits on commas and drops repeats", "[subscription]") {
  std::vector<std::string> out;
  REQUIRE(parse_glob_list("?type=", "a,b*,a", &out).ok());
  CHECK(out == std::vector<std::string>{"a", "b*"});
}

TEST_CASE("an empty glob anywhere in a list is a usage error naming it", "[subscription]") {
  for (const char* bad : {"", ",", "a,", ",a", "a,,b"}) {
    std::vector<std::string> out;
    Status s = parse_glob_list("?type=", bad, &out);
    CHECK(s.code == Status::kUsage);
    CHECK(s.message.find("?type=") != std::string::npos);
    CHECK(s.message.find("empty glob") != std::string::npos);
  }
}

TEST_CASE("a route filter takes type and machine lists joined by semicolons", "[subscription]") {
  Filter f;
  REQUIRE(parse_route_filter("type:queue_update", &f).ok());
  CHECK(f == filter({"queue_update"}, {}));
  REQUIRE(parse_route_filter("type:workflow_*,job;machine:w-1", &f).ok());
  CHECK(f == filter({"workflow_*", "job"}, {"w-1"}));
  REQUIRE(parse_route_filter("machine:a;machine:b", &f).ok());
  CHECK(f == filter({}, {"a", "b"}));
}

TEST_CASE("a route filter with an unknown key, no colon or an empty glob is refused",
          "[subscription]") {
  Filter f = filter({"kept"}, {});
  for (const char* bad :
       {"", "typo:a", "types:a", "type", "type:", "type:a;", "type:a;;machine:b", "machine:a,,b"}) {
    Status s = parse_route_filter(bad, &f);
    CHECK_FALSE(s.ok());
    CHECK(s.code == Status::kUsage);
  }
  CHECK(f == filter({"kept"}, {}));  // nothing changed
  Status s = parse_route_filter("typo:a", &f);
  CHECK(s.message.find("unknown key 'typo'") != std::string::npos);
}

TEST_CASE("a route spec splits PATH from FILTER at the first equals sign", "[subscription]") {
  Route r;
  REQUIRE(parse_route("/api/v1/ws/queue=type:queue_update", &r).ok());
  CHECK(r.path == "/api/v1/ws/queue");
  CHECK(r.filter == filter({"queue_update"}, {}));
  for (const char* bad : {"/x", "x=type:a", "=type:a", "/x?y=1=type:a", "/x=", "/x=foo:a"}) {
    Status s = parse_route(bad, &r);
    CHECK(s.code == Status::kUsage);
    CHECK(s.message.rfind("--route '", 0) == 0);
  }
}

TEST_CASE("query parameters replace the route's filter key by key", "[subscription]") {
  const Filter route = filter({"queue_update"}, {"w-1"});
  Filter f;
  REQUIRE(filter_from_query({{"machine", "w-2,w-3"}}, route, &f).ok());
  CHECK(f == filter({"queue_update"}, {"w-2", "w-3"}));
  REQUIRE(filter_from_query({{"type", "a"}, {"type", "b,c"}, {"token", "x"}}, route, &f).ok());
  CHECK(f == filter({"a", "b", "c"}, {"w-1"}));
  REQUIRE(filter_from_query({{"hitl", "0"}}, route, &f).ok());
  CHECK(f == filter({"queue_update"}, {"w-1"}, false));
  REQUIRE(filter_from_query({}, route, &f).ok());
  CHECK(f == route);
}

TEST_CASE("a bad query filter is an error and leaves the base filter", "[subscription]") {
  const Filter route = filter({"queue_update"}, {});
  Filter f;
  Status s = filter_from_query({{"machine", "a"}, {"type", ""}}, route, &f);
  CHECK(s.code == Status::kUsage);
  CHECK(s.message.find("?type=") != std::string::npos);
  CHECK(f == route);
  s = filter_from_query({{"hitl", "no"}}, route, &f);
  CHECK(s.message.find("?hitl=") != std::string::npos);
  CHECK(f == route);
}

TEST_CASE("subscribe replaces types and machines and keeps hitl", "[subscription]") {
  Filter f = filter({"x"}, {"y"}, false);
  REQUIRE(apply_subscribe(json::parse(R"({"type":"subscribe","machines":["w-1","w-*"]})"), &f)
              .ok());
  CHECK(f == filter({}, {"w-1", "w-*"}, false));
  REQUIRE(apply_subscribe(json::parse(R"({"type":"subscribe","types":[],"machines":[]})"), &f)
              .ok());
  CHECK(f == filter({}, {}, false));  // empty lists: everything
}

TEST_CASE("a subscribe of the wrong shape is an error and changes nothing", "[subscription]") {
  const Filter before = filter({"x"}, {"y"});
  for (const char* bad : {R"({"type":"subscribe","types":"a"})",
                          R"({"type":"subscribe","types":[""]})",
                          R"({"type":"subscribe","types":["a",1]})",
                          R"({"type":"subscribe","machines":null})",
                          R"({"type":"subscribe","types":["a"],"machines":{"m":1}})"}) {
    Filter f = before;
    Status s = apply_subscribe(json::parse(bad), &f);
    CHECK_FALSE(s.ok());
    CHECK(s.message.find("must be a list of non-empty strings") != std::string::npos);
    CHECK(f == before);
  }
}

// --- index -------------------------------------------------------------------

TEST_CASE("the index gives each event to exactly the clients whose filter matches",
          "[subscription]") {
  SubscriptionIndex index;
  index.set(1, Filter{});                             // everything
  index.set(2, filter({}, {"w-1"}));                  // one machine
  index.set(3, filter({"queue_update"}, {"w-1", "w-2"}));
  index.set(4, filter({"queue_update"}, {}));         // one type
  index.set(5, filter({"queue_*"}, {}));              // a type glob
  index.set(6, filter({}, {"db-*"}));                 // a machine glob
  index.set(7, filter({"state_*"}, {"w-1"}));         // exact machine, type glob
  CHECK(index.size() == 7);
  CHECK(index.filtered() == 6);
  CHECK(index.glob_subscribers() == 2);

  CHECK(select(index, "state_change", "w-1") == std::vector<SubscriberId>{1, 2, 7});
  CHECK(select(index, "queue_update", "w-1") == std::vector<SubscriberId>{1, 2, 3, 4, 5});
  CHECK(select(index, "queue_update", "w-2") == std::vector<SubscriberId>{1, 3, 4, 5});
  CHECK(select(index, "queue_depth", "db-3") == std::vector<SubscriberId>{1, 5, 6});
  CHECK(select(index, "queue_update", nullptr) == std::vector<SubscriberId>{1, 4, 5});
  CHECK(select(index, "log", "elsewhere") == std::vector<SubscriberId>{1});
}

TEST_CASE("the index agrees with the filter rule for every client and event", "[subscription]") {
  SubscriptionIndex index;
  const std::vector<Filter> filters = {
      Filter{}, filter({}, {"m1"}), filter({"t1"}, {}), filter({"t1", "t2"}, {"m1", "m2"}),
      filter({"t*"}, {"m1"}), filter({}, {"m*"}), filter({"t2"}, {"*1"}), filter({"x"}, {"m1", "m*"}),
      filter({}, {}, false), filter({"t1"}, {"m2"}, false)};
  for (size_t i = 0; i < filters.size(); ++i) index.set(i + 1, filters[i]);
  const std::vector<std::string> types = {"t1", "t2", "t3", "x", "interrupt", "decision"};
  const std::vector<std::string> machines = {"m1", "m2", "m3", "n1"};
  for (const auto& t : types) {
    for (int mi = -1; mi < static_cast<int>(machines.size()); ++mi) {
      const std::string* m = mi < 0 ? nullptr : &machines[static_cast<size_t>(mi)];
      std::vector<SubscriberId> expected;
      for (size_t i = 0; i < filters.size(); ++i) {
        if (filters[i].matches(t, m)) expected.push_back(i + 1);
      }
      INFO("type " << t << " machine " << (m ? *m : "(none)"));
      CHECK(select(index, t, m) == expected);
    }
  }
}

TEST_CASE("a client whose filter changes moves in the index, and a removed one is gone",
          "[subscription]") {
  SubscriptionIndex index;
  index.set(1, filter({}, {"w-1"}));
  index.set(2, filter({}, {"w-1"}));
  CHECK(select(index, "e", "w-1") == std::vector<SubscriberId>{1, 2});
  index.set(1, filter({}, {"w-2"}));
  CHECK(select(index, "e", "w-1") == std::vector<SubscriberId>{2});
  CHECK(select(index, "e", "w-2") == std::vector<SubscriberId>{1});
  index.set(2, Filter{});
  CHECK(index.filtered() == 1);
  index.remove(1);
  index.remove(1);  // twice is harmless
  CHECK(select(index, "e", "w-2") == std::vector<SubscriberId>{2});
  CHECK(index.find(1) == nullptr);
  REQUIRE(index.find(2) != nullptr);
  CHECK(index.size() == 1);
  CHECK(index.everyone_gets("e"));
}

TEST_CASE("everyone_gets says when a plain broadcast is exact", "[subscription]") {
  SubscriptionIndex index;
  CHECK(index.everyone_gets("e"));  // no clients
  index.set(1, Filter{});
  index.set(2, Filter{});
  CHECK(index.everyone_gets("e"));
  CHECK(index.everyone_gets("interrupt"));
  index.set(3, Filter{{}, {}, false});
  CHECK(index.everyone_gets("e"));
  CHECK_FALSE(index.everyone_gets("interrupt"));
  CHECK(select(index, "interrupt", nullptr) == std::vector<SubscriberId>{1, 2});
  index.set(4, filter({"t"}, {}));
  CHECK_FALSE(index.everyone_gets("e"));
  index.remove(3);
  index.remove(4);
  CHECK(index.everyone_gets("interrupt"));
  CHECK(index.hitl_opt_outs() == 0);
}

TEST_CASE("10,000 clients on 1,000 machines: an event selects only that machine's ten",
          "[subscription]") {
  SubscriptionIndex index;
  for (SubscriberId id = 0; id < 10000; ++id) {
    index.set(id, filter({}, {"m-" + std::to_string(id % 1000)}));
  }
  CHECK(index.filtered() == 10000);
  CHECK(index.glob_subscribers() == 0);
  for (int m : {0, 1, 999}) {
    auto got = select(index, "state_change", "m-" + std::to_string(m));
    REQUIRE(got.size() == 10);
    for (SubscriberId id : got) CHECK(id % 1000 == static_cast<SubscriberId>(m));
  }
  CHECK(select(index, "state_change", "m-1000").empty());
  for (SubscriberId id = 0; id < 10000; id += 2) index.remove(id);
  CHECK(select(index, "state_change", "m-1").size() == 10);
  CHECK(select(index, "state_change", "m-2").empty());
  CHECK(index.size() == 5000);
}

// --- machine history ---------------------------------------------------------

TEST_CASE("machine history keeps the last N events of each machine", "[subscription]") {
  MachineHistory h(3, 1 << 20);
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    h.add(seq % 2 ? "odd" : "even", "tick", seq, text("e" + std::to_string(seq)));
  }
  std::vector<HeldEvent> out;
  h.collect(filter({}, {"odd"}), 0, &out);
  CHECK(seqs(out) == std::vector<uint64_t>{5, 7, 9});
  CHECK(*out[0].payload == "e5");
  out.clear();
  h.collect(filter({}, {"even", "odd"}), 0, &out);  // merged oldest first
  CHECK(seqs(out) == std::vector<uint64_t>{5, 6, 7, 8, 9, 10});
  out.clear();
  h.collect(filter({}, {"*d*"}), 6, &out);  // a glob, and only after seq 6
  CHECK(seqs(out) == std::vector<uint64_t>{7, 9});
  CHECK(h.events() == 6);
  CHECK(h.evictions() == 0);
}

TEST_CASE("machine history hands out nothing to a filter without machines", "[subscription]") {
  MachineHistory h(3, 1 << 20);
  h.add("m", "tick", 1, text("x"));
  std::vector<HeldEvent> out;
  h.collect(Filter{}, 0, &out);
  h.collect(filter({"tick"}, {}), 0, &out);
  CHECK(out.empty());
  h.collect(filter({"other"}, {"m"}), 0, &out);  // the type filter applies too
  CHECK(out.empty());
}

TEST_CASE("the byte bound evicts the least recently active machine first", "[subscription]") {
  // Each event costs 10 bytes of text + 4 of type; each id 2 bytes.
  const std::string ten(10, 'x');
  MachineHistory h(100, 3 * (2 + 2 * 14));  // room for three machines of two events
  uint64_t seq = 0;
  for (const char* m : {"m1", "m2", "m3"}) {
    h.add(m, "tick", ++seq, text(ten));
    h.add(m, "tick", ++seq, text(ten));
  }
  CHECK(h.machines() == 3);
  CHECK(h.evictions() == 0);
  h.add("m1", "tick", ++seq, text(ten));  // m1 most recent now, and we are over: m2 goes
  CHECK(h.evictions() == 1);
  CHECK(h.machines() == 2);
  std::vector<HeldEvent> out;
  h.collect(filter({}, {"m2"}), 0, &out);
  CHECK(out.empty());
  h.collect(filter({}, {"m1"}), 0, &out);
  CHECK(out.size() == 3);
  CHECK(h.bytes() <= 3 * (2 + 2 * 14));
}

TEST_CASE("a machine alone over the byte bound keeps its newest events that fit",
          "[subscription]") {
  MachineHistory h(100, 2 + 3 * 14);
  for (uint64_t seq = 1; seq <= 5; ++seq) h.add("m1", "tick", seq, text(std::string(10, 'x')));
  std::vector<HeldEvent> out;
  h.collect(filter({}, {"m1"}), 0, &out);
  CHECK(seqs(out) == std::vector<uint64_t>{3, 4, 5});
  h.add("m1", "tick", 6, text(std::string(1000, 'x')));  // larger than the bound
  CHECK(h.machines() == 0);
  CHECK(h.bytes() == 0);
  CHECK(h.evictions() == 1);
}

TEST_CASE("machine history off (N = 0) holds nothing", "[subscription]") {
  MachineHistory h(0, 1 << 20);
  CHECK_FALSE(h.enabled());
  h.add("m", "tick", 1, text("x"));
  CHECK(h.machines() == 0);
}
