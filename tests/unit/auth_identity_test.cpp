// SPDX-License-Identifier: Apache-2.0
// Identity (auth/identity.h) and the refusal reply of a refused interrupt
// (hitl_refusal.h).
#include <catch2/catch.hpp>

#include "smws/auth/identity.h"
#include "smws/hitl_refusal.h"

using nlohmann::json;
using namespace smws::auth;

TEST_CASE("identities: verified only via users, jwt and proxy, and their JSON never carries expiry", "[auth][identity]") {
  Identity alice{"alice", {"ops"}, "jwt", 1000.0};
  CHECK(alice.verified());
  CHECK(alice.in_group("ops"));
  CHECK_FALSE(alice.in_group("op"));
  CHECK(alice.to_json() == json::parse(R"({"name":"alice","groups":["ops"],"via":"jwt"})"));
  CHECK(alice.brief_json() == json::parse(R"({"name":"alice","via":"jwt"})"));
  CHECK_FALSE(alice.expired(999.9));
  CHECK(alice.expired(1000.0));
  CHECK(alice.monotonic_deadline(900.0, 50.0) == 150.0);
  CHECK_FALSE(Identity::anonymous().verified());
  CHECK_FALSE(Identity::shared_token().verified());
  CHECK_FALSE(Identity::anonymous().expired(1e12));
  CHECK_FALSE(Identity::anonymous().monotonic_deadline(1, 1));
  CHECK(Identity{"p", {}, "proxy", std::nullopt}.verified());
  CHECK(Identity{"u", {}, "users", std::nullopt}.verified());
}

TEST_CASE("a refused interrupt's reply: built, parsed, and mapped to sm-send's exit code", "[hitl][refusal]") {
  using smws::InterruptRefusalReason;
  json j = smws::interrupt_refusal_json("i-7", "audit file /var/log/a: No space left on device",
                                        InterruptRefusalReason::kAudit);
  CHECK(j == json::parse(R"({"type":"error","interrupt_id":"i-7",
      "error":"audit file /var/log/a: No space left on device","reason":"audit"})"));
  auto r = smws::parse_interrupt_refusal(j);
  REQUIRE(r);
  CHECK(r->interrupt_id == "i-7");
  CHECK(r->reason == InterruptRefusalReason::kAudit);
  CHECK(smws::interrupt_refusal_exit_code(r->reason) == 74);
  CHECK(smws::interrupt_refusal_exit_code(InterruptRefusalReason::kInvalid) == 65);
  CHECK(smws::interrupt_refusal_exit_code(InterruptRefusalReason::kFull) == 75);
  CHECK(smws::interrupt_refusal_exit_code(InterruptRefusalReason::kOther) == 70);
  auto other = smws::parse_interrupt_refusal(json::parse(R"({"type":"error","interrupt_id":"x","reason":"new"})"));
  REQUIRE(other);
  CHECK(other->reason == InterruptRefusalReason::kOther);
  CHECK(other->reason_text == "new");
  CHECK(other->error.empty());
  CHECK_FALSE(smws::parse_interrupt_refusal(json::parse(R"({"type":"decision","interrupt_id":"x"})")));
  CHECK_FALSE(smws::parse_interrupt_refusal(json::parse(R"({"type":"error"})")));
  CHECK_FALSE(smws::parse_interrupt_refusal(json::parse("[]")));
}
