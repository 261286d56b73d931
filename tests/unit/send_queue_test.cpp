// SPDX-License-Identifier: Apache-2.0
// SendQueue: one connection's output queue, its drop policy and discards.
#include <catch2/catch.hpp>

#include <string>

#include "smws/net/send_queue.h"
#include "smws/protocol_messages.h"

using namespace smws::net;

namespace {

Frame data(const std::string& text) { return make_frame(text); }

// The queue's kinds and payload bytes front to back, encoding lazy entries.
std::string describe(SendQueue& q) {
  std::string out;
  DropNotice notice = [](uint64_t n) { return "dropped " + std::to_string(n); };
  for (size_t i = 0; i < q.size(); ++i) {
    QueueEntry& e = q.at(i);
    q.materialize(e, notice);
    if (!out.empty()) out += ",";
    switch (e.kind) {
      case EntryKind::kData: out += *e.frame; break;
      case EntryKind::kDropNotice: out += "[" + std::to_string(e.dropped) + "]"; break;
      case EntryKind::kPong: out += "pong"; break;
      case EntryKind::kControl: out += "ping"; break;
      case EntryKind::kClose: out += "close"; break;
      case EntryKind::kRaw: out += "raw"; break;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("only data messages count against the bound", "[send_queue]") {
  SendQueue q;
  q.push(data("a"), EntryKind::kData);
  q.push(data("p"), EntryKind::kControl);
  q.push_pong("x");
  q.push(data("b"), EntryKind::kData);
  CHECK(q.size() == 4);
  CHECK(q.data_queued() == 2);
}

TEST_CASE("a ping flood queues one pong, answering the latest ping", "[send_queue]") {
  SendQueue q;
  for (int i = 0; i < 1000; ++i) q.push_pong("ping " + std::to_string(i));
  REQUIRE(q.size() == 1);
  DropNotice none;
  q.materialize(q.front(), none);
  // A server pong: FIN + opcode 0xA, unmasked length, then the payload.
  CHECK(q.front().frame->substr(2) == "ping 999");
  q.pop_front();
  q.push_pong("again");  // after the pong is written, a new ping gets its own
  CHECK(q.size() == 1);
}

TEST_CASE("drops merge into one notice standing where the dropped messages were",
          "[send_queue]") {
  SendQueue q;
  q.push(data("1"), EntryKind::kData);
  q.push(data("2"), EntryKind::kData);
  q.drop_oldest_and_push(data("3"));
  CHECK(describe(q) == "[1],2,3");
  q.drop_oldest_and_push(data("4"));
  CHECK(describe(q) == "[2],3,4");
  CHECK(q.data_queued() == 2);
}

TEST_CASE("a partly written front frame is never dropped or discarded", "[send_queue]") {
  SendQueue q;
  q.push(data("front"), EntryKind::kData);
  q.push(data("2"), EntryKind::kData);
  q.advance_front(2);  // "fr" is with the kernel
  q.drop_oldest_and_push(data("3"));
  CHECK(describe(q) == "front,[1],3");
  q.push(data("close"), EntryKind::kClose);
  q.discard_unstarted();
  CHECK(describe(q) == "front,close");
  CHECK(q.data_queued() == 1);
}

TEST_CASE("with only a partial frame queued, the new message is the one dropped",
          "[send_queue]") {
  SendQueue q;
  q.push(data("front"), EntryKind::kData);
  q.advance_front(1);
  q.drop_oldest_and_push(data("new"));
  CHECK(describe(q) == "front,[1]");
  CHECK(q.data_queued() == 1);
}

TEST_CASE("discard keeps HTTP bytes and the close frame, and forgets a queued pong",
          "[send_queue]") {
  SendQueue q;
  q.push(data("101"), EntryKind::kRaw);
  q.push(data("a"), EntryKind::kData);
  q.push_pong("x");
  q.push(data("bye"), EntryKind::kClose);
  q.discard_unstarted();
  CHECK(describe(q) == "raw,close");
  CHECK(q.data_queued() == 0);
  q.push_pong("y");  // the discarded pong no longer counts as queued
  CHECK(q.size() == 3);
}

TEST_CASE("the drop notice is the tool's message, encoded as a text frame", "[send_queue]") {
  SendQueue q;
  q.push(data("1"), EntryKind::kData);
  q.drop_oldest_and_push(data("2"));
  DropNotice notice = smws::protocol::dropped_message;
  q.materialize(q.front(), notice);
  CHECK(*q.front().frame == *make_text_frame(R"({"type":"dropped","count":1})"));
}
