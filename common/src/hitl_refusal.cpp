// SPDX-License-Identifier: Apache-2.0
#include "smws/hitl_refusal.h"

#include "smws/exit_code.h"

namespace smws {

const char* interrupt_refusal_reason_name(InterruptRefusalReason reason) {
  switch (reason) {
    case InterruptRefusalReason::kAudit: return "audit";
    case InterruptRefusalReason::kInvalid: return "invalid";
    case InterruptRefusalReason::kFull: return "full";
    case InterruptRefusalReason::kOther: break;
  }
  return "other";
}

nlohmann::json interrupt_refusal_json(std::string_view interrupt_id, std::string_view error,
                                      InterruptRefusalReason reason) {
  return {{"type", "error"},
          {"interrupt_id", std::string(interrupt_id)},
          {"error", std::string(error)},
          {"reason", interrupt_refusal_reason_name(reason)}};
}

std::optional<InterruptRefusal> parse_interrupt_refusal(const nlohmann::json& reply) {
  if (!reply.is_object()) return std::nullopt;
  auto type = reply.find("type");
  if (type == reply.end() || !type->is_string() || *type != "error") return std::nullopt;
  auto id = reply.find("interrupt_id");
  if (id == reply.end() || !id->is_string()) return std::nullopt;
  InterruptRefusal r;
  r.interrupt_id = id->get<std::string>();
  if (auto e = reply.find("error"); e != reply.end() && e->is_string()) r.error = e->get<std::string>();
  if (auto why = reply.find("reason"); why != reply.end() && why->is_string()) {
    r.reason_text = why->get<std::string>();
    if (r.reason_text == "audit") r.reason = InterruptRefusalReason::kAudit;
    else if (r.reason_text == "invalid") r.reason = InterruptRefusalReason::kInvalid;
    else if (r.reason_text == "full") r.reason = InterruptRefusalReason::kFull;
  }
  return r;
}

int interrupt_refusal_exit_code(InterruptRefusalReason reason) {
  switch (reason) {
    case InterruptRefusalReason::kAudit: return kExitIoErr;
    case InterruptRefusalReason::kInvalid: return kExitDataErr;
    case InterruptRefusalReason::kFull: return kExitTempFail;
    case InterruptRefusalReason::kOther: break;
  }
  return kExitSoftware;
}

}  // namespace smws
