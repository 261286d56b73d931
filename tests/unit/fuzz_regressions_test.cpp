// SPDX-License-Identifier: Apache-2.0
// Inputs the fuzzers (tests/fuzz/) found in code other modules own, pinned
// where a corpus replay would not say enough: each case names its target,
// the input and what went wrong. (Inputs fixed in a target's own module are
// replayed from tests/fuzz/corpus/<target>/regressions/ instead.)
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "smws/relay_hub.h"
#include "smws/subscription.h"

using smws::ClientMessage;
using smws::RelayHub;

// fuzz_relay_client: "[\u0222" is valid UTF-8, so the codec lets it through;
// nlohmann's parse error quotes the bytes it read ("last read: '[\xc8'"), cut
// inside the character, and error_reply() dumped that text, which threw
// type_error 316: ws-relay answered {"error":"internal error"} instead.
TEST_CASE("a client message whose parse error quotes half a character gets a JSON error reply",
          "[relay][fuzz]") {
  ClientMessage m = RelayHub::classify_client_message("[\xc8\xa2");
  CHECK(m.kind == ClientMessage::Kind::kError);
  auto reply = nlohmann::json::parse(m.reply);
  CHECK(reply["type"] == "error");
  CHECK(reply["error"].get<std::string>().rfind("not JSON", 0) == 0);
}

// fuzz_relay_client: a number too large for a double ({"v":1e400}) makes
// nlohmann throw out_of_range 406, not parse_error; classify_client_message
// caught only the latter, and ws-relay's loop answered "internal error".
TEST_CASE("a client message with a number too large for a double gets a not-JSON error reply",
          "[relay][fuzz]") {
  ClientMessage m = RelayHub::classify_client_message(R"({"type":"note","v":1e400})");
  CHECK(m.kind == ClientMessage::Kind::kError);
  auto reply = nlohmann::json::parse(m.reply);
  CHECK(reply["type"] == "error");
  CHECK(reply["error"] == "not JSON: number overflow parsing '1e400'");
}

// fuzz_subscription: GET /ws/events?hitl=%80 made filter_error_message()
// quote a byte that is not UTF-8; dump() threw type_error 316, uncaught on
// the loop thread, and ws-relay died (std::terminate) on one unauthenticated
// request. The integration twin is in tests/integration/test_conformance.py.
TEST_CASE("a refused filter that quotes bytes that are not UTF-8 is still a JSON error",
          "[subscription][fuzz]") {
  smws::Filter f;
  auto st = smws::filter_from_query({{"hitl", "\x80"}}, smws::Filter{}, &f);
  REQUIRE_FALSE(st.ok());
  auto reply = nlohmann::json::parse(smws::filter_error_message(st));
  CHECK(reply["type"] == "error");
}

// fuzz_subscription: globs are not checked for UTF-8 (?type=%FF), and
// Filter::describe() threw on them.
TEST_CASE("a filter with a glob that is not UTF-8 still describes itself as JSON",
          "[subscription][fuzz]") {
  smws::Filter f;
  auto st = smws::filter_from_query({{"type", "\xff"}}, smws::Filter{}, &f);
  if (st.ok()) CHECK(nlohmann::json::accept(f.describe()));
}
