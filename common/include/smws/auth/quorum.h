// SPDX-License-Identifier: Apache-2.0
// The vote tally of one pending interrupt under a policy with `required` N
// (policy.h; SPEC "Policies"). Pure: no clock, no I/O; the caller has already
// checked that the decision is well formed (HitlTable's checks: one entry per
// action request, each type allowed by review_configs) and that the voter may
// decide (Policy::may_decide).
//
// A decision (the `decisions` array) is classified as a whole:
//   approve — every entry is "approve";
//   edit    — entries are approve/edit and at least one is "edit";
//   reject  — at least one entry is "reject" or "respond" (a veto).
// Rules:
//   - approvals by distinct people (Identity::name) count until `required`;
//     each approval before that yields a `vote` message
//       {"type":"vote","interrupt_id":…,"by":{identity},"have":K,"need":N}
//     to broadcast and record; the one that reaches N decides.
//   - a reject decides at once (a veto), with the rejecter's entries.
//   - an edit replaces the action(s) under review and restarts the count,
//     the editor's vote being the first (K = 1); its vote message carries
//     "restarted":true and "decisions": the entries now under review, so
//     clients show what is being approved. An "approve" entry after an edit
//     approves the action as edited. A later edit replaces again.
//   - the final approve decision's entries are the reviewed ones: "approve"
//     for an untouched action, the latest "edit" for an edited one — what
//     the agent must run.
//   - the same person voting again (before a restart) is an error, not a
//     second vote: "alice has already approved (1 of 2)".
//   - with required > 1 a decision that approves some actions and rejects
//     others is refused ("a decision needing 2 approvals must approve or
//     edit every action, or reject"): a mixed answer from one person would
//     otherwise run the approved actions on one approval.
//   - anything after the interrupt is decided: error "already decided".
// With required 1 every valid decision decides at once, exactly as without
// a policy.
//
// Threads: none; the owner (ws-relay, under its lock, beside the HitlTable
// entry) serialises calls.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "smws/auth/identity.h"

namespace smws::auth {

struct QuorumOutcome {
  enum Kind { kVote, kDecided, kError };
  Kind kind = kError;
  // kVote: the vote message to broadcast and record.
  nlohmann::json vote;
  // kDecided: the final `decisions` array, and who decided it, in voting
  // order (one for a veto or required 1; N for a quorum). vetoed: it was a
  // reject or respond.
  nlohmann::json decisions;
  std::vector<Identity> deciders;
  bool vetoed = false;
  // kError: sent back to the voter only; nothing changed.
  std::string error;
};

class Quorum {
 public:
  // required is clamped to >= 1; actions = number of action requests.
  Quorum(std::string interrupt_id, int required, std::size_t actions);

  QuorumOutcome add(const Identity& by, const nlohmann::json& decisions);

  int have() const { return static_cast<int>(voters_.size()); }
  int need() const { return required_; }
  bool decided() const { return decided_; }
  // [{"name","via"}…] of the votes counted so far, for snapshots.
  nlohmann::json votes_json() const;
  // The entries under review (approve / latest edit per action).
  const nlohmann::json& under_review() const { return review_; }

 private:
  std::string interrupt_id_;
  int required_;
  nlohmann::json review_;         // array, one entry per action
  std::vector<Identity> voters_;  // since the last restart
  bool decided_ = false;
};

}  // namespace smws::auth
