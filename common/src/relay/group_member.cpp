// SPDX-License-Identifier: Apache-2.0
// GroupMember: a relay's part in a --redis group (group_member.h).
#include "smws/relay/group_member.h"

#include <random>

#include <nlohmann/json.hpp>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/log.h"
#include "smws/relay/redis_flags.h"

namespace smws::relay {
namespace {

std::string random_hex(size_t bytes) {
  std::random_device rd;
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

}  // namespace

GroupMember::GroupMember(RelayState* state, RelayIo* io, Audience* audience, Decisions* decisions,
                         const RelayOptions& options, const redis::RedisUrl& url,
                         std::function<RelayHub()> make_hub, double started)
    : state_(state),
      io_(io),
      audience_(audience),
      decisions_(decisions),
      options_(options),
      make_hub_(std::move(make_hub)),
      started_(started),
      relay_id_(random_hex(6)) {
  redis::StreamOptions so;
  so.url = url;
  so.stream = options.redis_stream;
  so.history = options.redis_history;
  so.buffer = options.redis_buffer;
  so.load_recent = options.redis_history;
  so.max_machines = HubOptions{}.max_machines;  // evicted as the relays' tables evict
  so.relay_id = relay_id_;
  so.epoch_candidate = random_hex(8);
  (void)group_stream_options(options, &so);  // Sentinel and WAIT; run_ws_relay checked them
  stream_ = std::make_unique<redis::RedisStream>(so, this);
  audience_->hold_new_clients();
}

void GroupMember::start(double mono) {
  if (!io_->watch(stream_->fd(), [this] { stream_->on_readable(); })) {
    log::error("redis: cannot watch the connection set");
  }
  stream_->start(mono);
}

RelayHub::Intercept GroupMember::check_interrupt(std::string_view event) {
  // The interrupt becomes pending on every relay (this one included) when
  // it comes back through the stream; here it is only checked (by the
  // table's own rules, without adding it) and given a group-unique id.
  RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  if (parsed.is_object() && (!parsed.contains("interrupt_id") || parsed["interrupt_id"].is_null())) {
    parsed["interrupt_id"] = "i-" + relay_id_ + "-" + std::to_string(state_->next_interrupt++);
  }
  const IntakeRules& rules = decisions_->rules();
  if (std::string problem = reply_to_problem(parsed, rules); !problem.empty()) {
    out.ok = false;
    out.error = "interrupt: " + problem + "; refused";
    return out;
  }
  if (parsed.is_object() && rules.policy && rules.policy->roles_enabled()) {
    parsed["policy"] = rules.policy->policy_json(auth::action_names(parsed));
  }
  nlohmann::json asked = parsed.is_object() ? parsed : nlohmann::json::object();
  HitlInterruptResult r = state_->hitl.prepare_interrupt(std::move(parsed));
  if (!r.ok) {
    answer_refusal(io_, asked, rules, r.error, refusal_reason_for(r.error));
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  state_->last_interrupt_id = r.event["interrupt_id"].get<std::string>();
  auto reply_to = r.event.find("reply_to");
  state_->origin[state_->last_interrupt_id] =
      reply_to != r.event.end() && reply_to->is_string() ? reply_to->get<std::string>() : "";
  // reply_to stays on this relay (origin): the stream, and so every
  // relay's clients, never see it.
  out.replacement = client_text(r.event);
  return out;
}

void GroupMember::push() {
  std::vector<redis::Outgoing> events;
  {
    MutexLock lock(&state_->mu);
    events.swap(state_->group_inbox);
  }
  if (events.empty()) return;
  for (redis::Outgoing& o : events) stream_->append(std::move(o));
  // One script call for what one read(2) brought (or more, while a batch
  // is in flight).
  stream_->flush();
}

void GroupMember::decide(net::ClientId id, const nlohmann::json& decision, const Peer& who,
                         double mono) {
  // Checked here, decided by the group: the first valid decision in Redis
  // wins and comes back through the stream to every relay.
  HitlDecisionResult r;
  std::string refusal;
  {
    MutexLock lock(&state_->mu);
    r = state_->hitl.on_decision(decision, who.address, mono, /*resolve=*/false);
    const IntakeRules& rules = decisions_->rules();
    if (r.accepted() && rules.policy && rules.policy->roles_enabled()) {
      const nlohmann::json* interrupt =
          state_->hitl.pending_event(r.resolved->decision["interrupt_id"].get<std::string>());
      auth::DecideCheck c =
          check_decider(*rules.policy, *interrupt, r.resolved->decision["decisions"], who.identity);
      if (!c.allowed) {
        refusal = c.error;
      } else if (rules.policy->effective(auth::action_names(*interrupt)).required > 1) {
        refusal = "a decision needing several approvals is not supported with --redis yet";
      }
    }
  }
  if (!r.accepted()) {
    io_->send_text(id, r.error.dump());
    return;
  }
  std::string interrupt_id = r.resolved->decision["interrupt_id"].get<std::string>();
  if (!refusal.empty()) {
    ++not_allowed_;
    io_->send_text(id, not_allowed_reply(interrupt_id, refusal));
    return;
  }
  stamp_decided_by(&r.resolved->decision, who.identity, {who.identity});
  stream_->decide(interrupt_id, r.resolved->decision.dump(),
                  [this, id, interrupt_id](redis::DecideOutcome outcome) {
                    if (outcome == redis::DecideOutcome::kWon) {
                      // Still pending here: the tail has not shown it yet.
                      bool unseen;
                      {
                        MutexLock lock(&state_->mu);
                        unseen = state_->hitl.is_pending(interrupt_id);
                      }
                      if (unseen) won_unseen_[interrupt_id] = id;
                      return;
                    }
                    nlohmann::json e = {{"type", "error"}, {"interrupt_id", interrupt_id}};
                    if (outcome == redis::DecideOutcome::kNotPending) {
                      e["error"] = "not pending";
                      e["reason"] = "already decided";
                    } else {
                      ++decisions_unavailable_;
                      e["error"] = "the decision could not be recorded: redis is unavailable; "
                                   "send it again";
                    }
                    io_->send_text(id, e.dump());
                  });
}

void GroupMember::propose_timeout(const std::string& interrupt_id, const std::string& text) {
  stream_->decide(interrupt_id, text, [this, interrupt_id, text](redis::DecideOutcome o) {
    if (o == redis::DecideOutcome::kUnavailable) timeouts_to_retry_.emplace_back(interrupt_id, text);
  });
}

void GroupMember::tick(double mono) {
  stream_->on_tick(mono);
  decisions_->retry_group_records();
  if (!audience_->serving() && (stream_->stats().reconnects > 0 || mono - started_ > kGroupStartWait)) {
    log::warn("redis: serving without the group's state until Redis is reachable");
    audience_->serve(wall_seconds());
  }
  std::vector<HitlResolution> expired;
  {
    MutexLock lock(&state_->mu);
    if (auto next = state_->hitl.next_deadline(); next && *next <= mono) {
      expired = state_->hitl.expire(mono);
    }
  }
  // A timeout is resolved once for the group: every relay proposes it,
  // the decide script lets the first one in.
  for (const HitlResolution& r : expired) {
    propose_timeout(r.decision["interrupt_id"].get<std::string>(), r.decision.dump());
  }
  if (draining_for_exit_ && stream_->stats().buffered == 0) {
    draining_for_exit_ = false;
    log::note(1, "stdin ended: draining clients (up to " + duration_text(options_.drain_timeout) +
                     "), then exiting");
    io_->begin_shutdown(options_.drain_timeout);
  }
}

void GroupMember::on_loaded(const redis::GroupSnapshot& snap, bool first) {
  const double now = wall_seconds();
  const bool new_epoch = !epoch_.empty() && snap.epoch != epoch_;
  epoch_ = snap.epoch;
  uint64_t old_last;
  {
    MutexLock lock(&state_->mu);
    old_last = state_->hub.last_seq();
    state_->hub = make_hub_();
    // The held events first, then the stored machines, which are the
    // table's state at snap.last_seq (the replay of recent events may
    // lack machines whose last change is older).
    for (const auto& e : snap.recent) state_->hub.apply(e.seq, e.event, now);
    for (const std::string& m : redis::machine_replay(snap)) state_->hub.table(m, now);
    state_->hub.set_last_seq(snap.last_seq);
    state_->hub.set_since_floor(snap.start);  // a ?since= from before the epoch: gap or snapshot
    state_->hitl = HitlTable(HitlOptions{options_.hitl_timeout, kHitlMaxPending});
    std::unordered_map<std::string, std::string> still_ours;
    for (const redis::GroupSnapshot::Pending& p : snap.pending) {
      auto event = nlohmann::json::parse(p.event, nullptr, false);
      // Its deadline counts from when it was appended, not from this load.
      HitlInterruptResult r = state_->hitl.on_interrupt(std::move(event), monotonic_seconds() - p.age_s);
      if (!r.ok) continue;
      std::string id = r.event["interrupt_id"].get<std::string>();
      if (auto it = state_->origin.find(id); it != state_->origin.end()) {
        still_ours.emplace(id, it->second);
      }
    }
    // Stdin interrupts not yet appended stay ours too.
    for (const redis::Outgoing& o : state_->group_inbox) {
      if (o.kind == 'i' && state_->origin.count(o.key)) still_ours.emplace(o.key, state_->origin[o.key]);
    }
    state_->origin.swap(still_ours);
  }
  log::note(1, "redis: loaded the group's state: epoch " + snap.epoch + ", seq " +
                   std::to_string(snap.last_seq) + ", " + std::to_string(snap.machines.size()) +
                   " machines, " + std::to_string(snap.pending.size()) + " pending");
  if (!audience_->serving()) {
    audience_->serve(now);
    return;
  }
  // Serving began before this first load (Redis was unreachable at start)
  // and nothing was shown yet: nothing to correct unless the group has state.
  if (first && old_last == 0 && snap.last_seq == 0) return;
  // Decisions that won in Redis but never reached the tail. With the same
  // epoch and the interrupt no longer pending they were only trimmed
  // before we read them (decided all the same); otherwise Redis lost them
  // (restarted without its data, or from an older append-only file), and
  // their clients must decide again.
  for (const auto& [interrupt_id, client] : won_unseen_) {
    bool pending_again;
    {
      MutexLock lock(&state_->mu);
      pending_again = state_->hitl.is_pending(interrupt_id);
    }
    if (!new_epoch && !pending_again) continue;
    ++decisions_lost_;
    log::warn("redis: the decision for " + interrupt_id +
              " was lost with Redis's data; its client was told to decide again");
    io_->send_text(client, nlohmann::json{{"type", "error"},
                                          {"interrupt_id", interrupt_id},
                                          {"error", "the decision was lost: redis lost its data; "
                                                    "decide again if it is still pending"}}
                               .dump());
  }
  won_unseen_.clear();
  // A resync: what the clients hold may be missing events (trimmed past us)
  // or belong to another epoch. Tell them, then give everyone the group's
  // state now.
  nlohmann::json gap = {{"type", "gap"}, {"reason", "resync"}, {"epoch", snap.epoch}};
  if (snap.last_seq > old_last) {
    gap["from"] = old_last + 1;
    gap["to"] = snap.last_seq;
  }
  audience_->resync(gap, now);
}

void GroupMember::on_entries(const std::vector<redis::GroupSnapshot::Entry>& entries) {
  const double now = wall_seconds();
  std::vector<Outgoing> out;
  out.reserve(entries.size());
  struct Reply {
    std::string to, text;
  };
  std::vector<Reply> replies;
  {
    MutexLock lock(&state_->mu);
    for (const auto& e : entries) {
      // Type and machine choose the audience (subscriptions); the hub's
      // scan finds them without a DOM. The events were checked by the
      // relay that appended them. Only HITL messages, which also change
      // the pending table, are parsed.
      RelayHub::Applied applied;
      Payload p = state_->hub.apply(e.seq, e.event, now, &applied);
      if (!p) continue;
      if (applied.type == "interrupt" || applied.type == "decision") {
        auto dom = nlohmann::json::parse(e.event, nullptr, false);
        auto id_it = dom.is_object() ? dom.find("interrupt_id") : dom.end();
        const std::string id =
            id_it != dom.end() && id_it->is_string() ? id_it->get<std::string>() : "";
        if (applied.type == "interrupt" && !id.empty()) {
          HitlInterruptResult r = state_->hitl.on_interrupt(dom, monotonic_seconds());
          if (auto o = state_->origin.find(id); r.ok && o != state_->origin.end()) {
            // Its origin records it, with the reply_to the stream never carried.
            nlohmann::json record = r.event;
            if (!o->second.empty()) record["reply_to"] = o->second;
            decisions_->record(std::move(record));
          }
        } else if (applied.type == "decision" && !id.empty()) {
          state_->hitl.resolve_elsewhere(id, dom.value("timed_out", false));
          won_unseen_.erase(id);
          if (auto it = state_->origin.find(id); it != state_->origin.end()) {
            // The relay that read the interrupt prints the decision and
            // answers the waiting sm-send on its host; with --audit, once
            // its record is fsynced here.
            if (decisions_->audit()) {
              decisions_->record_group_decision(HitlResolution{dom, it->second});
            } else {
              io_->print(e.event + "\n");
              if (!it->second.empty()) replies.push_back({it->second, e.event});
            }
            state_->origin.erase(it);
          }
        }
      }
      out.push_back(Outgoing{net::make_text_frame(*p), std::move(applied.type),
                             std::move(applied.machine)});
    }
  }
  audience_->fan_out(out);
  for (const Reply& r : replies) io_->reply(r.to, r.text);
}

void GroupMember::on_link(bool up) {
  if (!up) return;
  std::vector<std::pair<std::string, std::string>> retry;
  retry.swap(timeouts_to_retry_);
  for (auto& [id, text] : retry) propose_timeout(id, text);
}

GroupCounters GroupMember::counters() const {
  return GroupCounters{relay_id_, stream_->up(), stream_->up() ? std::string() : stream_->down_reason(),
                       stream_->stats(), decisions_unavailable_, decisions_lost_};
}

}  // namespace smws::relay
