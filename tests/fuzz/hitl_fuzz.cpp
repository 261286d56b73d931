// SPDX-License-Identifier: Apache-2.0
// HITL validation: what a client's decision, a script's short decision or a
// stdin interrupt can be. The input is parsed as JSON (not JSON: nothing to
// do, the relay answered it already) and goes to HitlTable::on_decision
// against two pending interrupts (one action, and two with a reject-only
// review_config), to expand_decision for each (hitl-approve's short form),
// and to on_interrupt. Checks: nothing throws; a decision is accepted at most
// once, accepted only with one well-typed entry per action request, and a
// refusal is an error message for its sender; the pending count follows.
#include <nlohmann/json.hpp>

#include <string>

#include "fuzz_check.h"
#include "smws/hitl.h"

namespace {

using nlohmann::json;

const json& one_action() {
  static const json j = json::parse(R"({"type":"interrupt","interrupt_id":"i-7","thread_id":"t-1",
    "action_requests":[{"name":"deploy","args":{"env":"prod"}}],
    "review_configs":[{"action_name":"deploy","allowed_decisions":["approve","edit","reject"]}],
    "timeout":300,"reply_to":"/tmp/sm-reply-1234.sock"})");
  return j;
}

const json& two_actions() {
  static const json j = json::parse(R"({"type":"interrupt","interrupt_id":"i-2","thread_id":"t-2",
    "action_requests":[{"name":"deploy","args":{}},{"name":"drop_table","args":{"t":"users"}}],
    "review_configs":[{"action_name":"drop_table","allowed_decisions":["reject"]}],
    "timeout":10})");
  return j;
}

void check_accepted(const json& decision, const json& interrupt) {
  FUZZ_CHECK(decision["type"] == "decision");
  FUZZ_CHECK(decision["interrupt_id"] == interrupt["interrupt_id"]);
  FUZZ_CHECK(decision["decisions"].is_array());
  FUZZ_CHECK(decision["decisions"].size() == interrupt["action_requests"].size());
  for (const auto& d : decision["decisions"]) {
    FUZZ_CHECK(d.is_object() && d["type"].is_string());
    const auto& t = d["type"].get_ref<const std::string&>();
    FUZZ_CHECK(t == "approve" || t == "edit" || t == "reject");
    if (t == "edit") FUZZ_CHECK(smws::check_edited_action(d["edited_action"]).empty());
  }
  (void)decision.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json message = json::parse(data, data + size, nullptr, false);
  if (message.is_discarded()) return 0;

  smws::HitlTable table;
  FUZZ_CHECK(table.on_interrupt(one_action(), 0).ok);
  FUZZ_CHECK(table.on_interrupt(two_actions(), 0).ok);
  for (const json* interrupt : {&one_action(), &two_actions()}) {
    std::string error;
    auto full = smws::expand_decision(*interrupt, message, "fuzz", error);
    if (!full) {
      FUZZ_CHECK(!error.empty());
      continue;
    }
    const size_t before = table.pending_count();
    auto r = table.on_decision(*full, "127.0.0.1:1", 1);
    if (r.accepted()) {
      FUZZ_CHECK(table.pending_count() == before - 1);
      check_accepted(r.resolved->decision, *interrupt);
      FUZZ_CHECK(!table.on_decision(*full, "127.0.0.1:2", 1).accepted());  // first wins
    } else {
      FUZZ_CHECK(table.pending_count() == before);
      FUZZ_CHECK(r.error["type"] == "error" && r.error["error"].is_string());
    }
  }

  // The raw message as a client's decision.
  const size_t before = table.pending_count();
  auto r = table.on_decision(message, "127.0.0.1:3", 2);
  if (r.accepted()) {
    FUZZ_CHECK(table.pending_count() == before - 1);
    const json& interrupt = r.resolved->decision["interrupt_id"] == "i-7" ? one_action() : two_actions();
    check_accepted(r.resolved->decision, interrupt);
  } else {
    FUZZ_CHECK(r.error["type"] == "error");
  }

  // The same JSON as a stdin interrupt, then every timeout.
  auto in = table.on_interrupt(message, 3);
  if (in.ok) {
    FUZZ_CHECK(in.event["interrupt_id"].is_string());
    FUZZ_CHECK(table.is_pending(in.event["interrupt_id"].get<std::string>()));
    (void)table.pending_json(4).dump();
  } else {
    FUZZ_CHECK(!in.error.empty());
  }
  auto expired = table.expire(1e12);
  for (const auto& e : expired) FUZZ_CHECK(e.decision["timed_out"] == true);
  FUZZ_CHECK(table.pending_count() == 0);
  return 0;
}
