// SPDX-License-Identifier: Apache-2.0
// Who may decide an interrupt (SPEC "Who may decide", Roles and Policies).
//
// --approvers GROUP|@NAME (repeatable; default the group `approvers`): who
// may decide any interrupt no --policy line matches. `ops` is a group,
// `@bob` the person named bob.
//
// --policy FILE: JSON lines, `#` comment lines and blank lines skipped; the
// first line whose `action` glob matches an action's name is that action's
// policy (no line matches: --approvers, required 1, self_approval true):
//   {"action":"deploy*","approvers":["ops","@alice"],"required":2,"self_approval":false}
//   action         string, required; `*` matches any run of characters, all
//                  else is literal and case-sensitive
//   approvers      non-empty list of GROUP / @NAME; absent: --approvers
//   required       integer 1..kMaxRequired, default 1: distinct approvals needed
//   self_approval  bool, default true; false: the requester may not approve
// Any other key is an error (a typo such as "requried" must not silently
// weaken a rule); every bad line is named "FILE:LINE: why" and the file is
// refused as a whole.
//
// An interrupt with several action requests: the strictest rule wins. A
// person may decide only if every action's policy lets them; `required` is
// the largest; self_approval is false if any action's is. (One decision
// answers all the actions at once, so it must be one every policy accepts.)
//
// Roles off (no --users, --jwt-*, --trusted-proxy): everyone may decide,
// whatever the policy says. Roles on: only a verified identity (users, jwt,
// proxy) named by the policy; a shared-token or anonymous client watches.
//
// self_approval false forbids the requester to approve or edit (an edit is
// an approval of the edited action); rejecting or responding to their own
// request is allowed — withdrawing is not a risk. The requester is the
// interrupt's `sender.user` (set by sm-listen from the kernel's credentials),
// compared with the identity's name; no sender, no requester.
//
// Threads: Policy is immutable after setup; const methods are safe from any
// thread. ws-relay builds one at startup and on SIGHUP (the file re-read)
// and replaces it under the relay's lock.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "smws/auth/identity.h"
#include "smws/status.h"

namespace smws::auth {

// More than this many distinct approvals is a typo, not a process.
constexpr int kMaxRequired = 100;
// Bound on --policy lines: each decision walks them.
constexpr std::size_t kMaxPolicyRules = 10000;

struct PolicyRule {
  std::string action;                  // glob
  std::vector<std::string> approvers;  // "GROUP" / "@NAME"; empty: the --approvers list
  int required = 1;
  bool self_approval = true;
  std::string source;                  // "FILE:LINE", for messages
};

// What applies to one interrupt (one or more actions), after the strictest
// combination above.
struct EffectivePolicy {
  // Each action's approver list, in action order (an action's list is the
  // rule's, or --approvers).
  std::vector<std::vector<std::string>> approvers;
  std::vector<std::string> actions;
  int required = 1;
  bool self_approval = true;
};

struct DecideCheck {
  bool allowed = false;
  // !allowed: "not allowed: alice may not decide deploy (approvers: ops, @bob)"
  // or "not allowed: alice may not approve deploy: they asked for it
  // (self_approval is false)".
  std::string error;
};

// "*" matches any run (also empty); everything else literally.
bool glob_match(std::string_view pattern, std::string_view text);

class Policy {
 public:
  Policy();  // --approvers approvers, no rules, roles off

  // Validates each --approvers value ("ops", "@bob"); an empty list keeps
  // the default. kUsage naming the bad value.
  Status set_approvers(const std::vector<std::string>& values);
  // --policy FILE. kNotFound / kIo / kBadInput ("FILE:LINE: why", all bad lines).
  static Status load_rules(const std::string& path, std::vector<PolicyRule>* out);
  static Status parse_rules(std::string_view text, const std::string& source,
                            std::vector<PolicyRule>* out);
  void set_rules(std::vector<PolicyRule> rules) { rules_ = std::move(rules); }
  void set_roles_enabled(bool on) { roles_enabled_ = on; }

  bool roles_enabled() const { return roles_enabled_; }
  const std::vector<std::string>& approvers() const { return approvers_; }
  const std::vector<PolicyRule>& rules() const { return rules_; }

  // The policy for an interrupt whose action_requests have these names (an
  // interrupt with none: the --approvers policy).
  EffectivePolicy effective(const std::vector<std::string>& actions) const;

  // May `who` give a decision of `decision_type` (approve, edit, reject,
  // respond) on an interrupt with these actions, asked by `requester`
  // (sender.user; empty: none)? For a decision whose entries differ, the
  // caller asks with "approve" when any entry approves or edits.
  DecideCheck may_decide(const Identity& who, const std::vector<std::string>& actions,
                         std::string_view requester,
                         std::string_view decision_type = "approve") const;

  // {"approvers":[…],"required":N} for a pending interrupt in snapshots and
  // broadcasts; "self_approval":false added when it is; when the actions
  // have different approver lists, "approvers" is the first action's and
  // "all_of" lists each action's (a person must be in every one).
  nlohmann::json policy_json(const std::vector<std::string>& actions) const;

  // Whether an approver list admits this identity (a group it is in, or
  // @its name).
  static bool admits(const std::vector<std::string>& approvers, const Identity& who);

 private:
  std::vector<std::string> approvers_;
  std::vector<PolicyRule> rules_;
  bool roles_enabled_ = false;
};

// The action names of an interrupt: action_requests[].name, in order
// (missing or non-string names skipped).
std::vector<std::string> action_names(const nlohmann::json& interrupt);

}  // namespace smws::auth
