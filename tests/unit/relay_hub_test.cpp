// SPDX-License-Identifier: Apache-2.0
#include "smws/relay_hub.h"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "smws/event.h"

using smws::ClientMessage;
using smws::HubOptions;
using smws::IngestResult;
using smws::Payload;
using smws::RelayHub;
using nlohmann::json;

namespace {

constexpr double kNow = 1700000000.5;

HubOptions with(size_t history, bool seq) {
  HubOptions o;
  o.history = history;
  o.seq = seq;
  return o;
}

json parse(const Payload& p) { return json::parse(*p); }

std::vector<json> parse_all(const std::vector<Payload>& ps) {
  std::vector<json> out;
  for (const auto& p : ps) out.push_back(json::parse(*p));
  return out;
}

json machines_of(const RelayHub& hub) { return parse(hub.snapshot(kNow))["machines"]; }

// Feeds events "e1".."eN" of type "tick".
void feed_ticks(RelayHub& hub, int n) {
  for (int i = 1; i <= n; ++i) {
    REQUIRE(hub.ingest(R"({"type":"tick","n":)" + std::to_string(i) + "}", kNow).ok());
  }
}

}  // namespace

// --- stdin lines -----------------------------------------------------------

TEST_CASE("a valid event is broadcast byte for byte as received", "[relay_hub]") {
  RelayHub hub;
  const std::string line = R"({"type":"hello", "x" : 1.50, "z":{"a":[1,2]}})";
  auto r = hub.ingest(line + "\n", kNow);
  REQUIRE(r.ok());
  CHECK(*r.payload == line);
  CHECK(r.type == "hello");
  CHECK(hub.events_in() == 1);
}

TEST_CASE("surrounding whitespace and a CR are trimmed from a line", "[relay_hub]") {
  RelayHub hub;
  auto r = hub.ingest("  {\"type\":\"a\"}\r\n", kNow);
  REQUIRE(r.ok());
  CHECK(*r.payload == R"({"type":"a"})");
}

TEST_CASE("errors carry the caller's line number when it gives one", "[relay_hub]") {
  RelayHub hub;
  CHECK(hub.ingest("nope", kNow, 42).error.rfind("line 42: ", 0) == 0);
}

TEST_CASE("blank lines are skipped silently but still counted as lines", "[relay_hub]") {
  RelayHub hub;
  CHECK(hub.ingest("", kNow).status == IngestResult::Status::kBlank);
  CHECK(hub.ingest("   \t\r\n", kNow).status == IngestResult::Status::kBlank);
  auto bad = hub.ingest("nope", kNow);
  CHECK(bad.error.rfind("line 3: ", 0) == 0);
  CHECK(hub.invalid_lines() == 1);
  CHECK(hub.events_in() == 0);
}

TEST_CASE("each kind of bad line is refused with its line number and reason", "[relay_hub]") {
  RelayHub hub;
  struct Case {
    std::string line;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"not json", "not JSON"},
      {R"({"type":"a")", "not JSON"},
      {R"([{"type":"a"}])", "not a JSON object"},
      {R"("state_change")", "not a JSON object"},
      {"42", "not a JSON object"},
      {R"({"machine_id":"m"})", "no \"type\" member"},
      {R"({"type":7})", "\"type\" is not a string"},
      {R"({"type":{"a":1}})", "\"type\" is not a string"},
      {R"({"type":["state_change"]})", "\"type\" is not a string"},
      {R"({"type":""})", "\"type\" is empty"},
      {R"({"type":"state_change","state":)", "not JSON"},
      {R"({"type":"a"} trailing)", "not JSON"},
      {"{\"type\":\"a\xff\"}", "not UTF-8"},  // never reaches a text frame
  };
  int n = 0;
  for (const auto& c : cases) {
    ++n;
    INFO(c.line);
    auto r = hub.ingest(c.line, kNow);
    CHECK(r.status == IngestResult::Status::kInvalid);
    CHECK(r.payload == nullptr);
    CHECK(r.error.rfind("line " + std::to_string(n) + ": " + c.reason, 0) == 0);
  }
  CHECK(hub.invalid_lines() == cases.size());
  CHECK(hub.events_in() == 0);
}

TEST_CASE("a later non-string type overrides an earlier string one, as a DOM would",
          "[relay_hub]") {
  RelayHub hub;
  CHECK(hub.ingest(R"({"type":"a","type":3})", kNow).status == IngestResult::Status::kInvalid);
  CHECK(hub.ingest(R"({"type":3,"type":"a"})", kNow).ok());
}

TEST_CASE("a nested type does not count as the event's type", "[relay_hub]") {
  RelayHub hub;
  auto r = hub.ingest(R"({"data":{"type":"x"}})", kNow);
  CHECK(r.status == IngestResult::Status::kInvalid);
  CHECK(r.error.find("no \"type\" member") != std::string::npos);
}

TEST_CASE("parse errors name the column, not nlohmann's exception id", "[relay_hub]") {
  RelayHub hub;
  auto r = hub.ingest("{\"type\":tru}", kNow);
  CHECK(r.error.find("column") != std::string::npos);
  CHECK(r.error.find("json.exception") == std::string::npos);
}

// --- seq -------------------------------------------------------------------

TEST_CASE("under --seq events are numbered 1, 2, 3 and keep their other bytes as received",
          "[relay_hub]") {
  RelayHub hub(with(0, true));
  auto a = hub.ingest(R"({"type":"a","x":1.50})", kNow);
  auto b = hub.ingest(R"({"type":"state_change","machine_id":"m","state":"s"})", kNow);
  CHECK(a.seq == 1);
  CHECK(b.seq == 2);
  CHECK(*a.payload == R"({"seq":1,"type":"a","x":1.50})");
  CHECK(parse(b.payload)["seq"] == 2);
  CHECK(hub.last_seq() == 2);
}

TEST_CASE("under --seq an event's own seq is replaced instead of duplicated", "[relay_hub]") {
  RelayHub hub(with(0, true));
  for (const char* line : {R"({"type":"a","seq":99})", R"({"type":"a","s\u0065q":99})"}) {
    INFO(line);
    auto r = hub.ingest(line, kNow);
    REQUIRE(r.ok());
    CHECK(r.payload->find("99") == std::string::npos);
    CHECK(parse(r.payload)["seq"] == hub.last_seq());
  }
  // A nested or quoted "seq" is not the event's: the bytes are kept.
  auto nested = hub.ingest(R"({"type":"a","data":{"seq":5},"note":"\"seq\""})", kNow);
  CHECK(*nested.payload == R"({"seq":3,"type":"a","data":{"seq":5},"note":"\"seq\""})");
}

TEST_CASE("without --seq events are not stamped", "[relay_hub]") {
  RelayHub hub;
  auto r = hub.ingest(R"({"type":"a"})", kNow);
  CHECK(*r.payload == R"({"type":"a"})");
  CHECK(r.seq == 0);
  CHECK_FALSE(parse(hub.snapshot(kNow)).contains("seq"));
}

TEST_CASE("invalid lines do not use up a seq number", "[relay_hub]") {
  RelayHub hub(with(0, true));
  hub.ingest("bad", kNow);
  CHECK(hub.ingest(R"({"type":"a"})", kNow).seq == 1);
}

// --- machine table (SPEC edge rules) ----------------------------------------

TEST_CASE("a state_change creates a machine with the snapshot's fields", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"w-1","state":"processing",)"
             R"("previous_state":"idle","timestamp":1729845678.123,"data":{"job":"t-4"}})",
             kNow);
  auto machines = machines_of(hub);
  REQUIRE(machines.size() == 1);
  CHECK(machines[0] == json::parse(R"({"id":"w-1","current_state":"processing",)"
                                   R"("previous_state":"idle","last_activity":1729845678.123,)"
                                   R"("data":{"job":"t-4"}})"));
}

TEST_CASE("previous_state defaults to the machine's former state", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"idle"})", kNow);
  auto first = machines_of(hub)[0];
  CHECK(first["current_state"] == "idle");
  CHECK(first["previous_state"].is_null());
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"busy"})", kNow);
  auto second = machines_of(hub)[0];
  CHECK(second["current_state"] == "busy");
  CHECK(second["previous_state"] == "idle");
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"done","previous_state":"x"})",
             kNow);
  CHECK(machines_of(hub)[0]["previous_state"] == "x");
}

TEST_CASE("data is replaced, not merged, and absent data becomes {}", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"a","data":{"x":1,"y":2}})",
             kNow);
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"b","data":{"z":3}})", kNow);
  CHECK(machines_of(hub)[0]["data"] == json::parse(R"({"z":3})"));
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"c"})", kNow);
  CHECK(machines_of(hub)[0]["data"] == json::object());
}

TEST_CASE("last_activity is the event's timestamp, else the receive time", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"a","timestamp":12.5})", kNow);
  CHECK(machines_of(hub)[0]["last_activity"] == 12.5);
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"b"})", 99.25);
  CHECK(machines_of(hub)[0]["last_activity"] == 99.25);
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"c","timestamp":"late"})", 7.0);
  CHECK(machines_of(hub)[0]["last_activity"] == 7.0);
}

TEST_CASE("only state_change events with a machine_id touch the machine table",
          "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"progress","machine_id":"m","state":"x"})", kNow);
  hub.ingest(R"({"type":"state_change","state":"x"})", kNow);
  hub.ingest(R"({"type":"note","data":{"type":"state_change","machine_id":"m"}})", kNow);
  CHECK(hub.machines() == 0);
  CHECK(hub.events_in() == 3);  // all three are still broadcast
}

TEST_CASE("a state_change without state keeps the current state", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"a"})", kNow);
  hub.ingest(R"({"type":"state_change","machine_id":"m","data":{"p":1}})", kNow);
  auto m = machines_of(hub)[0];
  CHECK(m["current_state"] == "a");
  CHECK(m["data"]["p"] == 1);
}

TEST_CASE("machines are listed least recently active first", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"a","state":"1"})", kNow);
  hub.ingest(R"({"type":"state_change","machine_id":"b","state":"1"})", kNow);
  hub.ingest(R"({"type":"state_change","machine_id":"a","state":"2"})", kNow);
  auto ms = machines_of(hub);
  REQUIRE(ms.size() == 2);
  CHECK(ms[0]["id"] == "b");
  CHECK(ms[1]["id"] == "a");
}

TEST_CASE("past max_machines the least recently active machine is forgotten",
          "[relay_hub]") {
  HubOptions o;
  o.max_machines = 2;
  RelayHub hub(o);
  for (const char* id : {"a", "b", "a", "c"}) {
    hub.ingest(std::string(R"({"type":"state_change","machine_id":")") + id +
                   R"(","state":"s"})",
               kNow);
  }
  auto ms = machines_of(hub);
  REQUIRE(ms.size() == 2);
  CHECK(ms[0]["id"] == "a");
  CHECK(ms[1]["id"] == "c");
  CHECK(hub.machines_evicted() == 1);
}

// --- snapshot ----------------------------------------------------------------

TEST_CASE("the snapshot is an initial message with machines, pending and timestamp",
          "[relay_hub]") {
  RelayHub hub;
  auto s = parse(hub.snapshot(kNow));
  CHECK(s["type"] == "initial");
  CHECK(s["machines"] == json::array());
  CHECK(s["pending"] == json::array());
  CHECK(s["timestamp"] == kNow);
}

TEST_CASE("pending interrupts come from the pending provider", "[relay_hub]") {
  RelayHub hub;
  double asked_at = 0;
  hub.set_pending_provider([&](double now) {
    asked_at = now;
    return std::string(R"([{"type":"interrupt","interrupt_id":"i-1"}])");
  });
  auto s = parse(hub.snapshot(kNow));
  CHECK(asked_at == kNow);
  CHECK(s["pending"][0]["interrupt_id"] == "i-1");
}

TEST_CASE("under --seq the snapshot says which seq it reflects", "[relay_hub]") {
  RelayHub hub(with(0, true));
  CHECK(parse(hub.snapshot(kNow))["seq"] == 0);
  feed_ticks(hub, 3);
  CHECK(parse(hub.snapshot(kNow))["seq"] == 3);
}

TEST_CASE("a cached snapshot follows later changes", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"a"})", kNow);
  CHECK(machines_of(hub)[0]["current_state"] == "a");
  hub.ingest(R"({"type":"state_change","machine_id":"m","state":"b"})", kNow);
  CHECK(machines_of(hub)[0]["current_state"] == "b");
}

// --- connect: snapshot, history, since ----------------------------------------

TEST_CASE("a new client gets the snapshot then the last --history events", "[relay_hub]") {
  RelayHub hub(with(2, false));
  feed_ticks(hub, 3);
  auto first = parse_all(hub.on_connect(std::nullopt, kNow));
  REQUIRE(first.size() == 3);
  CHECK(first[0]["type"] == "initial");
  CHECK(first[1]["n"] == 2);
  CHECK(first[2]["n"] == 3);
}

TEST_CASE("without --history a new client gets only the snapshot", "[relay_hub]") {
  RelayHub hub;
  feed_ticks(hub, 3);
  auto first = hub.on_connect(std::nullopt, kNow);
  REQUIRE(first.size() == 1);
  CHECK(parse(first[0])["type"] == "initial");
  CHECK(hub.history_size() == 0);
}

TEST_CASE("since=N with every later event held resumes without a snapshot", "[relay_hub]") {
  RelayHub hub(with(5, true));
  feed_ticks(hub, 4);
  auto got = parse_all(hub.on_connect(2, kNow));
  REQUIRE(got.size() == 2);
  CHECK(got[0]["seq"] == 3);
  CHECK(got[1]["seq"] == 4);
}

TEST_CASE("since=N equal to the last seq gets nothing before the live stream",
          "[relay_hub]") {
  RelayHub hub(with(5, true));
  feed_ticks(hub, 4);
  CHECK(hub.on_connect(4, kNow).empty());
}

TEST_CASE("since=N with events gone gets a gap, the snapshot, then the held events",
          "[relay_hub]") {
  RelayHub hub(with(3, true));
  feed_ticks(hub, 10);  // holds 8, 9, 10
  auto got = parse_all(hub.on_connect(2, kNow));
  REQUIRE(got.size() == 5);
  CHECK(got[0] == json::parse(R"({"type":"gap","from":3,"to":7})"));
  CHECK(got[1]["type"] == "initial");
  CHECK(got[1]["seq"] == 10);
  CHECK(got[2]["seq"] == 8);
  CHECK(got[3]["seq"] == 9);
  CHECK(got[4]["seq"] == 10);
}

TEST_CASE("since=N right at the edge of the history needs no gap", "[relay_hub]") {
  RelayHub hub(with(3, true));
  feed_ticks(hub, 10);  // holds 8, 9, 10
  auto got = parse_all(hub.on_connect(7, kNow));
  REQUIRE(got.size() == 3);
  CHECK(got[0]["seq"] == 8);
}

TEST_CASE("since=N without history reports everything after N as a gap", "[relay_hub]") {
  RelayHub hub(with(0, true));
  feed_ticks(hub, 5);
  auto got = parse_all(hub.on_connect(1, kNow));
  REQUIRE(got.size() == 2);
  CHECK(got[0] == json::parse(R"({"type":"gap","from":2,"to":5})"));
  CHECK(got[1]["type"] == "initial");
}

TEST_CASE("since=0 is a client that has seen nothing", "[relay_hub]") {
  RelayHub hub(with(2, true));
  feed_ticks(hub, 2);
  auto got = parse_all(hub.on_connect(0, kNow));
  REQUIRE(got.size() == 2);
  CHECK(got[0]["seq"] == 1);
}

TEST_CASE("since=N beyond the last seq (an earlier run) gets a fresh snapshot",
          "[relay_hub]") {
  RelayHub hub(with(2, true));
  feed_ticks(hub, 3);
  auto got = parse_all(hub.on_connect(500, kNow));
  REQUIRE(got.size() == 3);
  CHECK(got[0]["type"] == "initial");
}

TEST_CASE("since is ignored without --seq", "[relay_hub]") {
  RelayHub hub(with(2, false));
  feed_ticks(hub, 3);
  auto got = parse_all(hub.on_connect(1, kNow));
  REQUIRE(got.size() == 3);
  CHECK(got[0]["type"] == "initial");
}

TEST_CASE("history payloads are the same bytes that were broadcast", "[relay_hub]") {
  RelayHub hub(with(1, true));
  auto r = hub.ingest(R"({"type":"a"})", kNow);
  auto got = hub.on_connect(std::nullopt, kNow);
  REQUIRE(got.size() == 2);
  CHECK(got[1] == r.payload);  // shared, not copied
}

// --- publish and interceptors ---------------------------------------------------

TEST_CASE("published messages are stamped and held like events", "[relay_hub]") {
  RelayHub hub(with(5, true));
  feed_ticks(hub, 1);
  auto p = hub.publish(R"({"type":"decision","interrupt_id":"i-1"})", kNow);
  CHECK(parse(p)["seq"] == 2);
  CHECK(hub.history_size() == 2);
  CHECK(hub.events_in() == 1);  // events_in counts stdin events only
}

TEST_CASE("an interceptor may rewrite an event before it is stamped", "[relay_hub]") {
  RelayHub hub(with(0, true));
  hub.set_interceptor("interrupt", [](std::string_view text, double) {
    auto j = json::parse(text);
    j["interrupt_id"] = "i-1";
    return RelayHub::Intercept{true, j.dump(), {}};
  });
  auto r = hub.ingest(R"({"type":"interrupt"})", kNow);
  REQUIRE(r.ok());
  CHECK(parse(r.payload)["interrupt_id"] == "i-1");
  CHECK(parse(r.payload)["seq"] == 1);
  CHECK(*hub.ingest(R"({"type":"other"})", kNow).payload == R"({"seq":2,"type":"other"})");
}

TEST_CASE("an interceptor may refuse an event, which is then neither sent nor held",
          "[relay_hub]") {
  RelayHub hub(with(5, true));
  hub.set_interceptor("interrupt", [](std::string_view, double) {
    return RelayHub::Intercept{false, {}, "interrupt: no action_requests"};
  });
  auto r = hub.ingest(R"({"type":"interrupt"})", kNow);
  CHECK(r.status == IngestResult::Status::kRefused);
  CHECK(r.error == "line 1: interrupt: no action_requests");
  CHECK(hub.history_size() == 0);
  CHECK(hub.last_seq() == 0);
}

// --- client messages --------------------------------------------------------------

TEST_CASE("client messages are sorted by type", "[relay_hub]") {
  using K = ClientMessage::Kind;
  CHECK(RelayHub::classify_client_message(R"({"type":"refresh"})").kind == K::kRefresh);
  CHECK(RelayHub::classify_client_message(R"({"type":"pong"})").kind == K::kPong);
  auto d = RelayHub::classify_client_message(R"({"type":"decision","interrupt_id":"i"})");
  CHECK(d.kind == K::kDecision);
  CHECK(d.json["interrupt_id"] == "i");
}

TEST_CASE("any other JSON object is forwarded as one compact NDJSON line, keys in order",
          "[relay_hub]") {
  auto m = RelayHub::classify_client_message("{ \"type\" : \"chat\",\n \"text\": \"hi\" }");
  CHECK(m.kind == ClientMessage::Kind::kForward);
  CHECK(m.line == "{\"type\":\"chat\",\"text\":\"hi\"}\n");  // the client's key order
  auto untyped = RelayHub::classify_client_message(R"({"x":1})");
  CHECK(untyped.kind == ClientMessage::Kind::kForward);
  CHECK(untyped.line == "{\"x\":1}\n");
}

TEST_CASE("non-JSON and JSON non-objects get an error reply", "[relay_hub]") {
  for (const char* text : {"hello", "", "[1,2]", "\"str\"", "3", "null", "{\"a\":"}) {
    INFO(text);
    auto m = RelayHub::classify_client_message(text);
    CHECK(m.kind == ClientMessage::Kind::kError);
    auto reply = json::parse(m.reply);
    CHECK(reply["type"] == "error");
    CHECK(reply["error"].is_string());
    CHECK_FALSE(reply["error"].get<std::string>().empty());
  }
  CHECK(json::parse(RelayHub::classify_client_message("[1]").reply)["error"] ==
        "not a JSON object (an array)");
}

// --- the fast path ---------------------------------------------------------------
// ingest() tables a state_change from raw members only when event::scan's fast
// pass settled the event and found it plain (event::Members); everything else
// is tabled from a DOM. tests/unit/event_test.cpp checks the members against
// nlohmann on its own mutated inputs; these cases pin what the relay relies on.

namespace {

// What the relay's raw path gets for text: true when event::scan settled it in
// its fast pass and it is plain; *type and *m then hold what the pass found.
bool raw_path(const std::string& text, std::string* type = nullptr,
              smws::event::Members* m = nullptr) {
  smws::event::Scan scan;
  smws::event::Members members;
  if (!smws::event::scan(text, &scan, &members)) {
    CHECK_FALSE(members.settled);  // nothing is reported for an invalid event
    return false;
  }
  if (type) *type = scan.type;
  if (m) *m = members;
  return members.settled && members.plain;
}

// The property the raw path must keep: it may refuse anything, but what it
// accepts nlohmann accepts too, as an object with the same non-empty string
// "type" and the same answer about a top-level "seq".
void check_quick_agrees_with_nlohmann(const std::string& text) {
  std::string type;
  smws::event::Members m;
  if (!raw_path(text, &type, &m)) return;
  INFO(text);
  json dom;
  REQUIRE_NOTHROW(dom = json::parse(text));
  REQUIRE(dom.is_object());
  REQUIRE(dom.contains("type"));
  REQUIRE(dom["type"].is_string());
  CHECK(dom["type"].get<std::string>() == type);
  CHECK_FALSE(type.empty());
  CHECK(m.has_seq == dom.contains("seq"));
}

bool quick(const std::string& text) { return raw_path(text); }

}  // namespace

TEST_CASE("the fast path settles ordinary events alone", "[relay_hub]") {
  for (const char* text : {
           R"({"type":"tick"})",
           R"( {"type" : "tick", "n":-12.50, "ok":true, "no":null, "f":false} )",
           R"({"a":[1,[2,{"b":"c"}],[]],"type":"x","o":{}})",
           R"({"type":"state_change","machine_id":"worker-123","state":"processing",)"
           R"("previous_state":"idle","timestamp":1729845678.123,)"
           R"("data":{"job_id":"task-456","progress":50}})",
           R"({"type":"héllo ✓","esc":"a\"b\\c\/d\b\f\n\r\t\u00e9"})",
       }) {
    INFO(text);
    CHECK(quick(text));
    check_quick_agrees_with_nlohmann(text);
  }
}

TEST_CASE("the fast path refuses what it cannot settle and event::scan decides", "[relay_hub]") {
  for (const char* text : {
           R"({"type":"a","x":1e400})",          // range: nlohmann refuses
           R"({"type":"a","x":1e5})",            // exponents are left to nlohmann
           R"({"t\u0079pe":"a"})",               // escaped key
           R"({"type":"\u0061"})",               // escaped type
           R"({"type":"a","s":"\ud83d\ude00"})", // surrogate pair
           R"({"type":"a","s":"\ud83d"})",       // lone surrogate: nlohmann refuses
           R"({"type":""})", R"({"type":1})", R"({"x":"type"})", R"([{"type":"a"}])",
           R"({"type":"a",})", R"({"type":"a"}})", R"({"type":"a"} x)", R"({"type":"a")",
           R"({"type":"a","n":01})", R"({"type":"a","n":-})", R"({"type":"a","n":1.})",
           R"({"type":"a","n":.5})", R"({"type":"a","v":tru})", R"({"type":"a","s":"\x"})",
           "{\"type\":\"a\",\"s\":\"\x01\"}", "{\"type\":\"a\xc0\xaf\"}", R"({"type":{"a":1}})",
           R"({"type":"a","type":2})",
       }) {
    INFO(text);
    CHECK_FALSE(quick(text));
    check_quick_agrees_with_nlohmann(text);
  }
  CHECK(quick(R"({"type":2,"type":"a"})"));  // the last duplicate wins, as in a DOM
}

TEST_CASE("events that are valid but not plain are settled by the fast pass, not tabled raw",
          "[relay_hub]") {
  const std::string deep_ok = std::string(smws::event::kPlainMaxDepth - 1, '[') +
                              std::string(smws::event::kPlainMaxDepth - 1, ']');
  const std::string deeper = "[" + deep_ok + "]";
  const std::string digits39(39, '7');
  for (auto [text, plain] : std::vector<std::pair<std::string, bool>>{
           {R"({"type":"a","x":1e5})", false},
           {R"({"type":"a","x":[{"y":-2.5E-3}]})", false},
           {R"({"type":"a","x":)" + digits39 + "}", true},
           {R"({"type":"a","x":)" + digits39 + "1}", false},
           {R"({"type":"a","x":-)" + digits39 + "}", false},  // 40 characters with the sign
           {R"({"type":"a","x":1.)" + std::string(38, '5') + "}", false},
           {R"({"type":"a","s":"\u00e9\uffff"})", true},
           {R"({"type":"a","s":"\ud83d\ude00"})", false},
           {R"({"type":"a","o":{"\ud83d\ude00":1}})", false},
           {R"({"type":"a","d":)" + deep_ok + "}", true},
           {R"({"type":"a","d":)" + deeper + "}", false},
       }) {
    INFO(text);
    smws::event::Scan scan;
    smws::event::Members m;
    REQUIRE(smws::event::scan(text, &scan, &m));
    CHECK(m.settled);
    CHECK(m.plain == plain);
    CHECK(quick(text) == plain);
  }
}

TEST_CASE("a state_change that is not plain is tabled from the DOM, as before the scanners merged",
          "[relay_hub]") {
  // Pins the snapshot bytes: a DOM re-serializes (keys sorted, 1e5 as
  // 100000.0) where the raw path keeps the bytes as received.
  RelayHub hub;
  REQUIRE(hub.ingest(R"({"type":"state_change","machine_id":"m","state":"s",)"
                     R"("data":{"b":1e5, "a":1}})",
                     kNow)
              .ok());
  REQUIRE(hub.ingest(R"({"type":"state_change","machine_id":"p","state":"s",)"
                     R"("data":{"b":1.5, "a":1}})",
                     kNow)
              .ok());
  const auto snap = *hub.snapshot(kNow);
  CHECK(snap.find(R"("id":"m","current_state":"s","previous_state":null,)"
                  R"("last_activity":1700000000.5,"data":{"a":1,"b":100000.0}})") !=
        std::string::npos);
  CHECK(snap.find(R"("id":"p","current_state":"s","previous_state":null,)"
                  R"("last_activity":1700000000.5,"data":{"b":1.5, "a":1}})") !=
        std::string::npos);
}

TEST_CASE("the fast path never accepts what nlohmann refuses (random mutations)",
          "[relay_hub]") {
  const std::vector<std::string> seeds = {
      R"({"type":"tick","n":1,"p":"xxxx"})",
      R"({"type":"state_change","machine_id":"m","state":"s","data":{"a":[1,2.5,null,true]}})",
      R"({"seq":3,"type":"x","nested":{"type":"y","seq":[{}]}})",
      R"({"type":"state_change","machine_id":"a","state":{"s":[1]},"previous_state":null,)"
      R"("timestamp":-1.5,"data":[{"x":"}"}],"state":"b"})",
      R"({"type":"é","s":"\"\\\/\n\u0041"})",
  };
  const std::string alphabet = "{}[]\":,.-+0123456789eEtrufalsny \\/\t\n\xc3\xa9\x80\xff";
  uint32_t rng = 12345;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
  };
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string s = seeds[next() % seeds.size()];
    const int edits = 1 + static_cast<int>(next() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = next() % (s.size() + 1);
      const char c = alphabet[next() % alphabet.size()];
      switch (next() % 3) {
        case 0: if (pos < s.size()) s[pos] = c; break;
        case 1: s.insert(s.begin() + static_cast<long>(pos), c); break;
        default: if (pos < s.size()) s.erase(pos, 1); break;
      }
    }
    smws::event::Scan scan;
    smws::event::Members raw;
    if (!smws::event::scan(s, &scan, &raw) || !raw.settled) continue;
    ++accepted;
    json dom = json::parse(s, nullptr, false);
    if (dom.is_discarded() || !dom.is_object() || !dom.contains("type") ||
        dom["type"] != scan.type || raw.has_seq != dom.contains("seq")) {
      FAIL_CHECK("fast path accepted what nlohmann does not agree with: " << s);
      continue;
    }
    // Each raw field is exactly the DOM's value for that key.
    for (auto [key, view] : {std::pair{"machine_id", raw.machine_id}, {"state", raw.state},
                             {"previous_state", raw.previous_state},
                             {"timestamp", raw.timestamp}, {"data", raw.data}}) {
      const bool present = dom.contains(key);
      if (present != !view.empty() ||
          (present && json::parse(view, nullptr, false) != dom[key])) {
        FAIL_CHECK("raw field " << key << " disagrees with the DOM in: " << s);
      }
    }
  }
  CHECK(accepted > 1000);  // the mutations did exercise the accepting side
}

TEST_CASE("publish refuses text that is not a JSON object instead of throwing", "[relay_hub]") {
  RelayHub hub(with(5, true));
  CHECK(hub.publish("not json", kNow) == nullptr);
  CHECK(hub.publish("[1]", kNow) == nullptr);
  CHECK(hub.last_seq() == 0);
  CHECK(hub.history_size() == 0);
}

TEST_CASE("an interceptor's broken replacement refuses the event", "[relay_hub]") {
  RelayHub hub;
  hub.set_interceptor("interrupt", [](std::string_view, double) {
    return RelayHub::Intercept{true, "{broken", {}};
  });
  auto r = hub.ingest(R"({"type":"interrupt"})", kNow);
  CHECK(r.status == IngestResult::Status::kRefused);
  CHECK(r.error.find("not a JSON object") != std::string::npos);
}

TEST_CASE("the fast and the DOM path table a state_change the same way", "[relay_hub]") {
  // The second line takes the DOM path (an escaped key) but means the same.
  const std::string fast =
      R"({"type":"state_change","machine_id":"w-1","state" : { "phase": [1, 2] },)"
      R"("timestamp":5,"data":{"k":"v"},"previous_state":"p"})";
  const std::string slow =
      R"({"type":"state_change","machine_id":"w-1","st\u0061te":{"phase":[1,2]},)"
      R"("timestamp":5,"data":{"k":"v"},"previous_state":"p"})";
  RelayHub a, b;
  a.ingest(fast, kNow);
  b.ingest(slow, kNow);
  CHECK(machines_of(a) == machines_of(b));
  CHECK(machines_of(a)[0]["current_state"]["phase"][1] == 2);
}

TEST_CASE("an escaped machine_id is decoded", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"w\u002d1","state":"a"})", kNow);
  hub.ingest(R"({"type":"state_change","machine_id":"w-1","state":"b"})", kNow);
  auto ms = machines_of(hub);
  REQUIRE(ms.size() == 1);
  CHECK(ms[0]["id"] == "w-1");
  CHECK(ms[0]["previous_state"] == "a");
}

TEST_CASE("the last of duplicate keys is the one tabled, as in a DOM", "[relay_hub]") {
  RelayHub hub;
  hub.ingest(R"({"type":"state_change","machine_id":"x","machine_id":"m","state":"a","state":"b"})",
             kNow);
  auto ms = machines_of(hub);
  REQUIRE(ms.size() == 1);
  CHECK(ms[0]["id"] == "m");
  CHECK(ms[0]["current_state"] == "b");
}

TEST_CASE("a machine_id that is not a string is broadcast but not tabled", "[relay_hub]") {
  RelayHub hub;
  CHECK(hub.ingest(R"({"type":"state_change","machine_id":7,"state":"a"})", kNow).ok());
  CHECK(hub.ingest(R"({"type":"state_change","machine_id":null,"state":"a"})", kNow).ok());
  CHECK(hub.machines() == 0);
}

TEST_CASE("since= takes a decimal number and nothing else", "[relay_hub][since]") {
  CHECK(RelayHub::parse_since("0") == 0u);
  CHECK(RelayHub::parse_since("42") == 42u);
  CHECK(RelayHub::parse_since("18446744073709551615") == UINT64_MAX);
  CHECK_FALSE(RelayHub::parse_since(""));
  CHECK_FALSE(RelayHub::parse_since("abc"));
  CHECK_FALSE(RelayHub::parse_since("5x"));
  CHECK_FALSE(RelayHub::parse_since("18446744073709551616"));  // out of range
}

TEST_CASE("since=-1 wraps to the largest value, which on_connect treats as no since",
          "[relay_hub][since]") {
  // Pins the behaviour ws-relay always had (std::stoull accepts a sign).
  CHECK(RelayHub::parse_since("-1") == UINT64_MAX);
}

TEST_CASE("a ?since= at or below the since floor gets a gap or a fresh snapshot, not the next events",
          "[relay_hub][epoch]") {
  HubOptions o;
  o.seq = true;
  o.history = 10;
  RelayHub hub(o);
  // A group's new epoch from seq 6 (Redis lost its data); 7 and 8 are new.
  hub.set_last_seq(6);
  hub.set_since_floor(6);
  hub.apply(7, "{\"type\":\"x\",\"n\":7}", 1000.0);
  hub.apply(8, "{\"type\":\"x\",\"n\":8}", 1000.0);
  auto at_floor = hub.on_connect(6, 1000.0);
  REQUIRE(at_floor.size() == 3);
  CHECK(at_floor[0]->find("\"type\":\"initial\"") != std::string::npos);
  CHECK(at_floor[1]->find("\"seq\":7") != std::string::npos);
  auto below = hub.on_connect(4, 1000.0);
  REQUIRE(below.size() == 4);
  CHECK(*below[0] == "{\"type\":\"gap\",\"from\":5,\"to\":6}");
  CHECK(below[1]->find("\"type\":\"initial\"") != std::string::npos);
  // After the floor: as before, exactly the events after N.
  auto after = hub.on_connect(7, 1000.0);
  REQUIRE(after.size() == 1);
  CHECK(after[0]->find("\"seq\":8") != std::string::npos);
}
