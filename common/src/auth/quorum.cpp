// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/quorum.h"

#include <algorithm>

namespace smws::auth {
namespace {

using json = nlohmann::json;

enum class Kind { kApprove, kEdit, kReject, kMixed, kBad };

std::string entry_type(const json& entry) {
  if (!entry.is_object()) return "";
  auto t = entry.find("type");
  return t != entry.end() && t->is_string() ? t->get<std::string>() : "";
}

Kind classify(const json& decisions) {
  if (!decisions.is_array() || decisions.empty()) return Kind::kBad;
  bool approve = false, edit = false, reject = false;
  for (const auto& d : decisions) {
    const std::string t = entry_type(d);
    if (t == "approve") approve = true;
    else if (t == "edit") edit = true;
    else if (t == "reject" || t == "respond") reject = true;
    else return Kind::kBad;
  }
  if (reject) return approve || edit ? Kind::kMixed : Kind::kReject;
  return edit ? Kind::kEdit : Kind::kApprove;
}

}  // namespace

Quorum::Quorum(std::string interrupt_id, int required, std::size_t actions)
    : interrupt_id_(std::move(interrupt_id)), required_(std::max(required, 1)), review_(json::array()) {
  for (std::size_t i = 0; i < actions; ++i) review_.push_back({{"type", "approve"}});
}

QuorumOutcome Quorum::add(const Identity& by, const json& decisions) {
  QuorumOutcome out;
  if (decided_) {
    out.error = "already decided";
    return out;
  }
  const Kind kind = classify(decisions);
  if (kind == Kind::kBad || decisions.size() != review_.size()) {
    out.error = "a decision needs one approve, edit, reject or respond entry per action request (" +
                std::to_string(review_.size()) + ")";
    return out;
  }
  if (kind == Kind::kReject || kind == Kind::kMixed || required_ == 1) {
    if (kind == Kind::kMixed && required_ > 1) {
      out.error = "a decision needing " + std::to_string(required_) +
                  " approvals must approve or edit every action, or reject";
      return out;
    }
    // A veto, or with required 1 simply the decision: final at once, as the
    // person gave it.
    decided_ = true;
    out.kind = QuorumOutcome::kDecided;
    out.decisions = decisions;
    out.deciders = {by};
    out.vetoed = kind == Kind::kReject || kind == Kind::kMixed;
    return out;
  }
  const auto voted = std::find_if(voters_.begin(), voters_.end(), [&](const Identity& v) { return v.name == by.name; });
  bool restarted = false;
  if (kind == Kind::kEdit) {
    // The edited entries replace what is under review; the count restarts
    // with the editor (who may have approved the earlier version).
    for (std::size_t i = 0; i < decisions.size(); ++i) {
      if (entry_type(decisions[i]) == "edit") review_[i] = decisions[i];
    }
    voters_.clear();
    restarted = true;
  } else if (voted != voters_.end()) {
    out.error = by.name + " has already approved (" + std::to_string(voters_.size()) + " of " +
                std::to_string(required_) + ")";
    return out;
  }
  voters_.push_back(by);
  if (static_cast<int>(voters_.size()) >= required_) {
    decided_ = true;
    out.kind = QuorumOutcome::kDecided;
    out.decisions = review_;
    out.deciders = voters_;
    return out;
  }
  out.kind = QuorumOutcome::kVote;
  out.vote = {{"type", "vote"},
              {"interrupt_id", interrupt_id_},
              {"by", by.to_json()},
              {"have", static_cast<int>(voters_.size())},
              {"need", required_}};
  if (restarted) {
    out.vote["restarted"] = true;
    out.vote["decisions"] = review_;
  }
  return out;
}

json Quorum::votes_json() const {
  json out = json::array();
  for (const auto& v : voters_) out.push_back(v.brief_json());
  return out;
}

}  // namespace smws::auth
