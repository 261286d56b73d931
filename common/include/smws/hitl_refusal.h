// SPDX-License-Identifier: Apache-2.0
// The answer an interrupt's `reply_to` gets at once when ws-relay refuses the
// interrupt (SPEC "Replies bound to their request"), so the waiting
// `sm-send --wait-reply` stops waiting and says why:
//
//   {"type":"error","interrupt_id":"i-7","error":"audit file …: No space left on device","reason":"audit"}
//
// reason   why                                     sm-send exits
//   audit    the --audit record could not be written  74 (EX_IOERR)
//   invalid  the interrupt itself is bad              65 (EX_DATAERR)
//   full     the pending table is full                75 (EX_TEMPFAIL: try later)
// A refusal with another or no reason exits 70: the relay knows something
// this sm-send does not, and neither 0 nor a "no" may be assumed.
//
// In smws::core: sm-send parses it, ws-relay builds it.
// Threads: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace smws {

enum class InterruptRefusalReason { kAudit, kInvalid, kFull, kOther };

struct InterruptRefusal {
  std::string interrupt_id;
  std::string error;
  InterruptRefusalReason reason = InterruptRefusalReason::kOther;
  std::string reason_text;  // as sent ("" when absent)
};

// "audit" / "invalid" / "full" ("other" for kOther, never sent).
const char* interrupt_refusal_reason_name(InterruptRefusalReason reason);

// The reply datagram's JSON for a refused interrupt.
nlohmann::json interrupt_refusal_json(std::string_view interrupt_id, std::string_view error,
                                      InterruptRefusalReason reason);

// A reply that is {"type":"error"} with a string interrupt_id is a refusal
// (error text "" when missing or not a string); anything else: nullopt.
std::optional<InterruptRefusal> parse_interrupt_refusal(const nlohmann::json& reply);

// 74, 65, 75, or 70 for kOther (exit_code.h values).
int interrupt_refusal_exit_code(InterruptRefusalReason reason);

}  // namespace smws
