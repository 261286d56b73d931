// SPDX-License-Identifier: Apache-2.0
// Decisions — the relay's half of HITL on a relay of its own: stdin
// interrupts into the pending table, client decisions and timeouts out of
// it, and with --audit the rule that makes an approval durable before it
// is acknowledged: record, then deliver (docs/hitl.md, "Durable
// approvals"). A decision or timeout is handed to the output thread as a
// record with a ticket; it is broadcast, printed and sent to reply_to only
// when the output thread posts that its record was fsynced
// (RelayState::audit_outcomes), and pending again, exactly as before, when
// it was not. A stdin interrupt is recorded before it is pending and
// broadcast, and stdin is held meanwhile (nothing overtakes it).
//
// With --redis the group decides (group_member.h); this class then only
// records and delivers the decisions whose interrupt this relay read.
//
// Thread: the loop thread, except on_stdin_interrupt, which the hub calls
// on whichever thread reads stdin, with RelayState::mu held. Times are
// passed in: `mono` (monotonic seconds) for deadlines, `wall` for the
// timestamps of what is broadcast.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/auth/policy.h"
#include "smws/auth/quorum.h"
#include "smws/hitl.h"
#include "smws/hitl_refusal.h"
#include "smws/relay/audience.h"
#include "smws/relay/relay_io.h"
#include "smws/relay/relay_state.h"

namespace smws::relay {

// What every stdin interrupt is held to before it is pending (here, and in
// the group member): where its reply may go, and the policy it carries.
struct IntakeRules {
  // Roles on: each interrupt carries "policy":{"approvers","required"}.
  const auth::Policy* policy = nullptr;
  // --reply-dir: a reply_to outside it is refused (no datagram is sent there).
  std::string reply_dir;
};

// "" when reply_to may be answered under rules, else why not.
std::string reply_to_problem(const nlohmann::json& interrupt, const IntakeRules& rules);
// The interrupt as clients see it: without reply_to (SPEC "Replies bound to
// their request": kept for the relay and the audit only).
std::string client_text(const nlohmann::json& interrupt);
// Answers a refused interrupt's reply_to at once (hitl_refusal.h), when it
// has one the rules allow, so its sm-send stops waiting.
void answer_refusal(RelayIo* io, const nlohmann::json& interrupt, const IntakeRules& rules,
                    const std::string& error, InterruptRefusalReason reason);
// The refusal reason for HitlTable's error text (a full table, or a bad interrupt).
InterruptRefusalReason refusal_reason_for(const std::string& table_error);
// Writes who decided (SPEC "Records"): a verified identity's {"name","via"}
// as decided_by (one per voter for a quorum), a different claimed name kept
// as claimed_by; without one, the claim stays and "verified":false is added.
void stamp_decided_by(nlohmann::json* decision, const auth::Identity& who,
                      const std::vector<auth::Identity>& deciders);
// Roles on: may `who` give a decision with these entries on this pending
// interrupt (its actions, its requester: sender.user)? Policy::may_decide.
auth::DecideCheck check_decider(const auth::Policy& policy, const nlohmann::json& interrupt,
                                const nlohmann::json& entries, const auth::Identity& who);
// The error a decision no policy allows gets, to its sender only.
std::string not_allowed_reply(const std::string& interrupt_id, const std::string& error);

class Decisions {
 public:
  // audit: an --audit file is open (records are then written before
  // anything is delivered).
  Decisions(RelayState* state, RelayIo* io, Audience* audience, bool audit)
      : state_(state), io_(io), audience_(audience), audit_(audit) {}
  // Before run(), and on SIGHUP (loop thread). The policy outlives its use.
  void set_rules(IntakeRules rules) { rules_ = std::move(rules); }
  const IntakeRules& rules() const { return rules_; }

  // The hub's interceptor for a stdin interrupt (no --redis): checked,
  // then pending and broadcast at once, or (--audit) held until recorded.
  RelayHub::Intercept on_stdin_interrupt(std::string_view event, double mono) REQUIRES(state_->mu);
  // For a caller that holds RelayState::mu by another name (the hub's
  // interceptor): tells clang it is this object's state_->mu.
  void assert_locked() const ASSERT_CAPABILITY(state_->mu) { state_->mu.assert_held(); }

  // A client's decision: checked; a wrong one gets its error back.
  // Roles on: only a person the policy names may decide; with `required`
  // N > 1, N distinct approvals decide (each earlier one is a `vote`).
  void decide(net::ClientId id, const nlohmann::json& decision, const Peer& who, double mono,
              double wall);
  // Resolves the interrupts whose deadline has passed.
  void tick(double mono, double wall);
  // Acts on the records' outcomes the output thread posted. True when a
  // held stdin interrupt was published or refused: stdin may be read on.
  bool handle_outcomes(double mono, double wall);

  // --redis: a decision the group made for an interrupt this relay read:
  // printed and answered once recorded here (retried on the tick while the
  // audit file fails).
  void record_group_decision(HitlResolution resolution) {
    record_then_deliver(std::move(resolution), std::nullopt, /*group=*/true);
  }
  void retry_group_records();
  // Any record (an interrupt the group made pending, say); only the audit
  // file's health learns of its outcome.
  void record(nlohmann::json record) { io_->record(std::move(record), 0); }

  bool audit() const { return audit_; }
  const std::string& audit_error() const { return audit_error_; }
  uint64_t audit_failures() const { return audit_failures_; }
  uint64_t not_allowed() const { return not_allowed_; }

 private:
  // A resolution whose record the output thread is writing, by ticket.
  struct InFlight {
    HitlResolution resolution;
    std::optional<net::ClientId> client;  // who decided; none for a timeout
    // --redis: a decision the group already made, whose origin this relay
    // is: only its stdout line and reply datagram wait for the record.
    bool group = false;
  };
  static constexpr uint64_t kHeldInterrupt = UINT64_MAX;  // held_interrupt's ticket

  void deliver(const HitlResolution& resolution, double wall) REQUIRES(state_->mu);
  void record_then_deliver(HitlResolution resolution, std::optional<net::ClientId> client,
                           bool group = false);

  RelayState* state_;
  RelayIo* io_;
  Audience* audience_;
  const bool audit_;
  std::unordered_map<uint64_t, InFlight> in_flight_;
  uint64_t next_ticket_ = 1;
  // --redis: the group's decisions whose record failed, retried on the tick.
  std::vector<HitlResolution> group_records_to_retry_;
  IntakeRules rules_;
  // Quorums under way: interrupt_id -> tally. Bounded by the pending table:
  // an entry leaves when its interrupt is decided, times out or is refused.
  std::unordered_map<std::string, auth::Quorum> quorums_;
  uint64_t not_allowed_ = 0;     // decisions no policy allowed (/metrics)
  std::string audit_error_;      // why the last record failed; empty once one is written
  uint64_t audit_failures_ = 0;  // records refused (/metrics)
};

}  // namespace smws::relay
