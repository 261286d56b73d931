// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "smws/redis_stream.h"

using namespace smws::redis;

namespace {
Outgoing ev(const std::string& text) {
  Outgoing o;
  o.event = text;
  return o;
}
}  // namespace

TEST_CASE("the append buffer batches in order with increasing counters", "[redis]") {
  AppendBuffer b(10, "r1");
  CHECK(b.empty());
  CHECK(b.take().events.empty());
  for (int i = 0; i < 5; ++i) REQUIRE(b.push(ev("{\"type\":\"t\",\"n\":" + std::to_string(i) + "}")));
  auto first = b.take(3);
  CHECK(first.counter == 1);
  REQUIRE(first.events.size() == 3);
  CHECK(first.events[0].event == "{\"type\":\"t\",\"n\":0}");
  CHECK(first.events[2].event == "{\"type\":\"t\",\"n\":2}");
  auto second = b.take();
  CHECK(second.counter == 2);
  REQUIRE(second.events.size() == 2);
  CHECK(second.events[1].event == "{\"type\":\"t\",\"n\":4}");
  CHECK(b.empty());
}

TEST_CASE("a batch is cut by bytes but always carries at least one event", "[redis]") {
  AppendBuffer b(10, "r1");
  std::string big(100, 'x');
  b.push(ev(big));
  b.push(ev(big));
  auto one = b.take(100, 50);
  CHECK(one.events.size() == 1);
  auto two = b.take(100, 250);
  CHECK(two.events.size() == 1);
}

TEST_CASE("buffer overflow drops the oldest, counts it and puts a gap notice first", "[redis]") {
  AppendBuffer b(3, "relay-x");
  for (int i = 0; i < 5; ++i) b.push(ev(std::to_string(i)));
  CHECK(b.dropped_total() == 2);
  CHECK(b.size() == 3);
  auto batch = b.take();
  REQUIRE(batch.events.size() == 4);
  auto gap = nlohmann::json::parse(batch.events[0].event);
  CHECK(gap["type"] == "gap");
  CHECK(gap["dropped"] == 2);
  CHECK(gap["relay_id"] == "relay-x");
  CHECK(batch.events[1].event == "2");
  CHECK(batch.events[3].event == "4");
  // The notice is given once.
  b.push(ev("5"));
  auto next = b.take();
  REQUIRE(next.events.size() == 1);
  CHECK(next.events[0].event == "5");
}

TEST_CASE("stream IDs are <seq>-0 and anything else is refused", "[redis]") {
  uint64_t seq = 0;
  CHECK(parse_entry_id("42-0", &seq));
  CHECK(seq == 42);
  CHECK_FALSE(parse_entry_id("42-1", &seq));
  CHECK_FALSE(parse_entry_id("1700000000000-0x", &seq));
  CHECK_FALSE(parse_entry_id("-0", &seq));
  CHECK_FALSE(parse_entry_id("abc", &seq));
}

TEST_CASE("the tail delivers only the next seq and resyncs on a hole", "[redis]") {
  CHECK(next_tail_step(0, 1) == TailStep::kDeliver);
  CHECK(next_tail_step(41, 42) == TailStep::kDeliver);
  CHECK(next_tail_step(41, 45) == TailStep::kResync);   // trimmed past us
  CHECK(next_tail_step(41, 3) == TailStep::kResync);    // a stream that restarted
  CHECK(next_tail_step(41, 41) == TailStep::kResync);
}

TEST_CASE("the machine replay restores previous_state from the stored former state", "[redis]") {
  GroupSnapshot snap;
  snap.machines.push_back({7, "\"idle\"", R"({"type":"state_change","machine_id":"b","state":"busy"})"});
  snap.machines.push_back(
      {3, "", R"({"type":"state_change","machine_id":"a","state":"up","previous_state":"x"})"});
  auto replay = machine_replay(snap);
  REQUIRE(replay.size() == 3);
  CHECK(nlohmann::json::parse(replay[0])["machine_id"] == "a");  // oldest seq first
  auto synthetic = nlohmann::json::parse(replay[1]);
  CHECK(synthetic["machine_id"] == "b");
  CHECK(synthetic["state"] == "idle");
  CHECK(nlohmann::json::parse(replay[2])["state"] == "busy");
}

TEST_CASE("appends wait while half the history is unread by this relay's tail", "[redis]") {
  // Nothing unread: a full batch, but never more than the window.
  CHECK(append_allowance(0, 0, 10000) == kMaxBatchEvents);
  CHECK(append_allowance(0, 0, 1000) == 500);
  CHECK(append_allowance(0, 0, 1000, 100) == 100);
  // Unread entries shrink the next batch, then stop it.
  CHECK(append_allowance(4500, 0, 10000) == 500);
  CHECK(append_allowance(5000, 0, 10000) == 0);
  CHECK(append_allowance(9000, 3000, 10000) == 0);
  CHECK(append_allowance(9000, 4500, 10000) == 500);
  // The tail ahead of our appends (other relays appended since): no wait.
  CHECK(append_allowance(10, 50, 10000) == kMaxBatchEvents);
  // A history of 1 still lets one event through at a time.
  CHECK(append_allowance(0, 0, 1) == 1);
  CHECK(append_allowance(1, 0, 1) == 0);
}
