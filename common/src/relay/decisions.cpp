// SPDX-License-Identifier: Apache-2.0
// Decisions: the pending table's way in and out, record-then-deliver
// (decisions.h).
#include "smws/relay/decisions.h"

#include "smws/log.h"

namespace smws::relay {

RelayHub::Intercept Decisions::on_stdin_interrupt(std::string_view event, double mono) {
  RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  HitlInterruptResult r = audit_ ? state_->hitl.prepare_interrupt(std::move(parsed))
                                 : state_->hitl.on_interrupt(std::move(parsed), mono);
  if (!r.ok) {
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  out.replacement = r.event.dump();
  if (audit_) {
    // Pending and broadcast once recorded (handle_outcomes); the caller
    // reads no further line meanwhile.
    out.hold = true;
    state_->held_interrupt = HeldInterrupt{r.event, 0};
    io_->record(r.event, kHeldInterrupt);
  }
  return out;
}

void Decisions::decide(net::ClientId id, const nlohmann::json& decision, const std::string& peer,
                       double mono, double wall) {
  MutexLock lock(&state_->mu);
  if (audit_) {
    // Recorded first, delivered when the record is fsynced.
    HitlDecisionResult r = state_->hitl.begin_decision(decision, peer, mono);
    if (!r.accepted()) {
      io_->send_text(id, r.error.dump());
      return;
    }
    record_then_deliver(std::move(*r.resolved), id);
    return;
  }
  HitlDecisionResult r = state_->hitl.on_decision(decision, peer, mono);
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
        continue;
      }
      std::string text = held.event.dump();
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
