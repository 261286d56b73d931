// SPDX-License-Identifier: Apache-2.0
// Decisions: the pending table's way in and out, record-then-deliver
// (decisions.h).
#include "smws/relay/decisions.h"

#include <filesystem>

#include "smws/log.h"

namespace smws::relay {

std::string reply_to_problem(const nlohmann::json& interrupt, const IntakeRules& rules) {
  if (!interrupt.is_object() || rules.reply_dir.empty()) return {};
  auto it = interrupt.find("reply_to");
  if (it == interrupt.end() || !it->is_string()) return {};
  std::filesystem::path path = std::filesystem::path(it->get<std::string>()).lexically_normal();
  std::filesystem::path dir = std::filesystem::path(rules.reply_dir).lexically_normal();
  auto rel = path.lexically_relative(dir);
  if (!path.is_absolute() || rel.empty() || *rel.begin() == ".." || rel == ".") {
    return "reply_to " + it->dump() + " is outside --reply-dir " + rules.reply_dir;
  }
  return {};
}

std::string client_text(const nlohmann::json& interrupt) {
  if (!interrupt.contains("reply_to")) return interrupt.dump();
  nlohmann::json copy = interrupt;
  copy.erase("reply_to");
  return copy.dump();
}

void answer_refusal(RelayIo* io, const nlohmann::json& interrupt, const IntakeRules& rules,
                    const std::string& error, InterruptRefusalReason reason) {
  if (!interrupt.is_object() || !reply_to_problem(interrupt, rules).empty()) return;
  auto to = interrupt.find("reply_to");
  if (to == interrupt.end() || !to->is_string() || to->get_ref<const std::string&>().empty()) return;
  auto id = interrupt.find("interrupt_id");
  std::string interrupt_id = id != interrupt.end() && id->is_string() ? id->get<std::string>() : "";
  io->reply(to->get<std::string>(), interrupt_refusal_json(interrupt_id, error, reason).dump());
}

InterruptRefusalReason refusal_reason_for(const std::string& table_error) {
  return table_error.rfind("too many pending", 0) == 0 ? InterruptRefusalReason::kFull
                                                       : InterruptRefusalReason::kInvalid;
}

void stamp_decided_by(nlohmann::json* decision, const auth::Identity& who,
                      const std::vector<auth::Identity>& deciders) {
  nlohmann::json& d = *decision;
  // Members the relay writes (here, on stdout and in the audit file): a
  // client's own copy of any of them is not kept, as HitlTable drops a
  // claimed timed_out.
  for (const char* owned : {"claimed_by", "verified", "from", "policy", "prev", "audit_seq", "logged_at"}) {
    d.erase(owned);
  }
  if (!who.verified()) {
    d["verified"] = false;
    return;
  }
  auto claimed = d.find("decided_by");
  if (claimed != d.end() && claimed->is_string() && claimed->get<std::string>() != who.name) {
    d["claimed_by"] = *claimed;
  }
  if (deciders.size() <= 1) {
    d["decided_by"] = who.brief_json();
    return;
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auth::Identity& i : deciders) list.push_back(i.brief_json());
  d["decided_by"] = std::move(list);
}

namespace {

// The requester of an interrupt: sender.user, as sm-listen wrote it from
// the kernel's credentials ("" without one).
std::string requester_of(const nlohmann::json& interrupt) {
  auto sender = interrupt.find("sender");
  if (sender == interrupt.end() || !sender->is_object()) return {};
  auto user = sender->find("user");
  return user != sender->end() && user->is_string() ? user->get<std::string>() : std::string();
}

// A decision approves when any entry approves or edits (policy.h).
bool approves(const nlohmann::json& entries) {
  if (!entries.is_array()) return false;
  for (const auto& e : entries) {
    std::string type = e.is_object() ? e.value("type", "") : "";
    if (type == "approve" || type == "edit") return true;
  }
  return false;
}

}  // namespace

auth::DecideCheck check_decider(const auth::Policy& policy, const nlohmann::json& interrupt,
                                const nlohmann::json& entries, const auth::Identity& who) {
  return policy.may_decide(who, auth::action_names(interrupt), requester_of(interrupt),
                           approves(entries) ? "approve" : "reject");
}

std::string not_allowed_reply(const std::string& interrupt_id, const std::string& error) {
  return nlohmann::json{{"type", "error"}, {"interrupt_id", interrupt_id}, {"error", error}, {"reason", "not allowed"}}
      .dump();
}

RelayHub::Intercept Decisions::on_stdin_interrupt(std::string_view event, double mono) {
  RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  if (std::string problem = reply_to_problem(parsed, rules_); !problem.empty()) {
    out.ok = false;
    out.error = "interrupt: " + problem + "; refused";
    return out;
  }
  if (parsed.is_object() && rules_.policy && rules_.policy->roles_enabled()) {
    parsed["policy"] = rules_.policy->policy_json(auth::action_names(parsed));
  }
  nlohmann::json asked = parsed.is_object() ? parsed : nlohmann::json::object();
  HitlInterruptResult r = audit_ ? state_->hitl.prepare_interrupt(std::move(parsed))
                                 : state_->hitl.on_interrupt(std::move(parsed), mono);
  if (!r.ok) {
    answer_refusal(io_, asked, rules_, r.error, refusal_reason_for(r.error));
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  out.replacement = client_text(r.event);
  if (audit_) {
    // Pending and broadcast once recorded (handle_outcomes); the caller
    // reads no further line meanwhile.
    out.hold = true;
    state_->held_interrupt = HeldInterrupt{r.event, 0};
    io_->record(r.event, kHeldInterrupt);
  }
  return out;
}

void Decisions::decide(net::ClientId id, const nlohmann::json& decision, const Peer& who, double mono,
                       double wall) {
  MutexLock lock(&state_->mu);
  // Well formed and pending? (HitlTable's checks, nothing changed yet.)
  HitlDecisionResult check = state_->hitl.on_decision(decision, who.address, mono, /*resolve=*/false);
  if (!check.accepted()) {
    io_->send_text(id, check.error.dump());
    return;
  }
  nlohmann::json final_decision = check.resolved->decision;
  const std::string interrupt_id = final_decision["interrupt_id"].get<std::string>();
  std::vector<auth::Identity> deciders{who.identity};
  if (rules_.policy && rules_.policy->roles_enabled()) {
    const nlohmann::json* interrupt = state_->hitl.pending_event(interrupt_id);
    const std::vector<std::string> actions = auth::action_names(*interrupt);
    auth::DecideCheck allowed = check_decider(*rules_.policy, *interrupt, final_decision["decisions"], who.identity);
    if (!allowed.allowed) {
      ++not_allowed_;
      io_->send_text(id, not_allowed_reply(interrupt_id, allowed.error));
      return;
    }
    auth::EffectivePolicy policy = rules_.policy->effective(actions);
    if (policy.required > 1) {
      auto it = quorums_.try_emplace(interrupt_id, interrupt_id, policy.required, actions.size()).first;
      auth::QuorumOutcome q = it->second.add(who.identity, final_decision["decisions"]);
      if (q.kind == auth::QuorumOutcome::kError) {
        io_->send_text(id, nlohmann::json{{"type", "error"}, {"interrupt_id", interrupt_id}, {"error", q.error}}
                               .dump());
        return;
      }
      if (q.kind == auth::QuorumOutcome::kVote) {
        // Every approver sees the count; the record says who voted.
        Payload p = state_->hub.publish(q.vote.dump(), wall);
        if (p) audience_->fan_out(Outgoing{net::make_text_frame(*p), "vote", std::nullopt});
        if (audit_) io_->record(q.vote, 0);
        return;
      }
      final_decision["decisions"] = q.decisions;
      deciders = q.deciders;
      quorums_.erase(it);
    }
  }
  stamp_decided_by(&final_decision, who.identity, deciders);
  if (audit_) {
    // Recorded first, delivered when the record is fsynced.
    HitlDecisionResult r = state_->hitl.begin_decision(final_decision, who.address, mono);
    if (!r.accepted()) {
      io_->send_text(id, r.error.dump());
      return;
    }
    record_then_deliver(std::move(*r.resolved), id);
    return;
  }
  HitlDecisionResult r = state_->hitl.on_decision(final_decision, who.address, mono);
  if (!r.accepted()) {
    io_->send_text(id, r.error.dump());
    return;
  }
  deliver(*r.resolved, wall);
}

void Decisions::tick(double mono, double wall) {
  MutexLock lock(&state_->mu);
  auto next = state_->hitl.next_deadline();
  if (!next || *next > mono) return;
  if (!audit_) {
    for (const HitlResolution& r : state_->hitl.expire(mono)) deliver(r, wall);
    return;
  }
  // A timeout whose record fails is pending again and due: retried here,
  // on the next tick, until it is recorded (and then resolved once).
  for (HitlResolution& r : state_->hitl.begin_expire(mono)) {
    record_then_deliver(std::move(r), std::nullopt);
  }
}

void Decisions::deliver(const HitlResolution& resolution, double wall) {
  quorums_.erase(resolution.decision["interrupt_id"].get<std::string>());
  std::string text = resolution.decision.dump();
  Payload p = state_->hub.publish(text, wall);
  audience_->fan_out(Outgoing{net::make_text_frame(*p), "decision", std::nullopt});
  io_->print(text + "\n");
  if (!resolution.reply_to.empty()) io_->reply(resolution.reply_to, text);
}

void Decisions::record_then_deliver(HitlResolution resolution, std::optional<net::ClientId> client,
                                    bool group) {
  const uint64_t ticket = next_ticket_++;
  nlohmann::json decision = resolution.decision;
  in_flight_.emplace(ticket, InFlight{std::move(resolution), client, group});
  io_->record(std::move(decision), ticket);
}

void Decisions::retry_group_records() {
  if (group_records_to_retry_.empty()) return;
  std::vector<HitlResolution> retry;
  retry.swap(group_records_to_retry_);
  for (HitlResolution& r : retry) record_group_decision(std::move(r));
}

bool Decisions::handle_outcomes(double mono, double wall) {
  bool resume_stdin = false;
  MutexLock lock(&state_->mu);
  std::vector<AuditOutcome> outcomes;
  outcomes.swap(state_->audit_outcomes);
  for (AuditOutcome& o : outcomes) {
    if (o.error.empty()) {
      audit_error_.clear();
    } else {
      audit_error_ = o.error;
      ++audit_failures_;
    }
    if (o.ticket == kHeldInterrupt) {
      HeldInterrupt held = std::move(*state_->held_interrupt);
      state_->held_interrupt.reset();
      resume_stdin = true;
      if (!o.error.empty()) {
        // Refused like any bad stdin line: neither pending nor broadcast.
        log::warn("stdin line " + std::to_string(held.line) + ": interrupt " +
                  held.event["interrupt_id"].dump() + ": not recorded (" + o.error + "); refused");
        answer_refusal(io_, held.event, rules_, o.error, InterruptRefusalReason::kAudit);
        continue;
      }
      std::string text = client_text(held.event);
      HitlInterruptResult r = state_->hitl.on_interrupt(std::move(held.event), mono);
      if (!r.ok) {  // cannot happen: nothing was added since prepare_interrupt
        log::error("stdin line " + std::to_string(held.line) + ": interrupt: " + r.error);
        continue;
      }
      std::optional<std::string> machine;
      if (auto m = r.event.find("machine_id"); m != r.event.end() && m->is_string()) {
        machine = m->get<std::string>();
      }
      Payload p = state_->hub.publish(text, wall);
      if (p) audience_->fan_out(Outgoing{net::make_text_frame(*p), "interrupt", std::move(machine)});
      continue;
    }
    auto it = in_flight_.find(o.ticket);
    if (it == in_flight_.end()) continue;
    InFlight f = std::move(it->second);
    in_flight_.erase(it);
    if (f.group) {
      // Decided by the group and broadcast already; the origin's stdout
      // and the waiting sm-send get it once it is recorded here.
      if (!o.error.empty()) {
        group_records_to_retry_.push_back(std::move(f.resolution));
        continue;
      }
      std::string text = f.resolution.decision.dump();
      io_->print(text + "\n");
      if (!f.resolution.reply_to.empty()) io_->reply(f.resolution.reply_to, text);
      continue;
    }
    const std::string id = f.resolution.decision["interrupt_id"].get<std::string>();
    if (o.error.empty()) {
      if (state_->hitl.commit(id)) deliver(f.resolution, wall);
      continue;
    }
    // Not recorded: pending again as before. A timeout is retried by the
    // next tick (its deadline has passed); a human's decision is refused.
    state_->hitl.abort(id);
    quorums_.erase(id);  // its votes are asked for again
    if (f.client) {
      nlohmann::json e = {{"type", "error"},
                          {"error", "the decision could not be recorded: " + o.error +
                                        "; it is still pending"},
                          {"interrupt_id", id},
                          {"reason", "audit failed"}};
      io_->send_text(*f.client, e.dump());
    }
  }
  return resume_stdin;
}

}  // namespace smws::relay
