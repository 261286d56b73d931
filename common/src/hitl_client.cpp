// SPDX-License-Identifier: Apache-2.0
#include "smws/hitl_client.h"

#include <fnmatch.h>

#include <algorithm>

#include "smws/duration_text.h"
#include "smws/hitl.h"

namespace smws {

using nlohmann::json;

namespace {

std::string id_of(const json& message) {
  auto it = message.find("interrupt_id");
  return it != message.end() && it->is_string() ? it->get<std::string>() : std::string();
}

HitlEffect effect(HitlEffect::Kind kind, std::string id = {}, std::string text = {}) {
  HitlEffect e;
  e.kind = kind;
  e.id = std::move(id);
  e.text = std::move(text);
  return e;
}

}  // namespace

const json& hitl_actions(const json& interrupt) {
  static const json empty = json::array();
  auto it = interrupt.find("action_requests");
  return it != interrupt.end() && it->is_array() ? *it : empty;
}

std::string hitl_action_names(const json& interrupt) {
  std::string names;
  for (const auto& action : hitl_actions(interrupt)) {
    if (!names.empty()) names += ", ";
    names += action.value("name", std::string("?"));
  }
  return names;
}

std::string hitl_decision_verbs(const json& decision) {
  std::string verbs;
  auto entries = decision.find("decisions");
  if (entries != decision.end() && entries->is_array()) {
    for (const auto& entry : *entries) {
      if (!entry.is_object() || !entry.contains("type") || !entry["type"].is_string()) continue;
      if (!verbs.empty()) verbs += ", ";
      verbs += entry["type"].get<std::string>();
    }
  }
  return verbs.empty() ? "decided" : verbs;
}

double hitl_warn_threshold(double timeout) { return std::min(30.0, std::max(1.0, timeout / 4)); }

HitlRelayText classify_relay_text(std::string_view text) {
  bool may_be = false;
  for (std::string_view word : {"\"initial\"", "\"interrupt\"", "\"decision\"", "\"error\"", "\"gap\"",
                                "\"dropped\"", "\"ping\"", "\\u"})
    if (text.find(word) != std::string_view::npos) may_be = true;
  if (!may_be) return HitlRelayText::kDrop;
  json parsed = json::parse(text.begin(), text.end(), nullptr, false);
  if (!parsed.is_object()) return HitlRelayText::kDrop;
  auto type = parsed.find("type");
  if (type == parsed.end() || !type->is_string()) return HitlRelayText::kDrop;
  const auto& name = type->get_ref<const std::string&>();
  if (name == "ping") return HitlRelayText::kAppPing;
  if (name == "initial" || name == "interrupt" || name == "decision" || name == "error" || name == "gap" ||
      name == "dropped")
    return HitlRelayText::kKeep;
  return HitlRelayText::kDrop;
}

HitlClient::HitlClient(HitlClientOptions options) : options_(std::move(options)) {}

void HitlClient::on_connected(std::string local_address) {
  local_address_ = std::move(local_address);
  connected_ = true;
  got_snapshot_ = false;
}

void HitlClient::on_disconnected() {
  connected_ = false;
  got_snapshot_ = false;
  local_address_.clear();
}

std::vector<HitlEffect> HitlClient::take_effects() {
  std::vector<HitlEffect> out;
  out.swap(effects_);
  return out;
}

void HitlClient::send(const json& message) { {
  HitlEffect e = effect(HitlEffect::Kind::kSend, id_of(message));
  e.message = message;
  emit(std::move(e));
} }

void HitlClient::refresh() { send(json{{"type", "refresh"}}); }

void HitlClient::on_message(const json& message, double now) {
  try {
    const std::string type = message.value("type", std::string());
    if (type == "initial") {
      on_snapshot(message, now);
    } else if (type == "interrupt") {
      on_interrupt(message, std::nullopt, now);
    } else if (type == "decision") {
      on_decision(message);
    } else if (type == "error") {
      on_error(message);
    } else if (type == "gap" || type == "dropped") {
      // Something may have been missed: start again from a fresh snapshot.
      emit(effect(HitlEffect::Kind::kNote, {}, "relay reported " + type + "; asking for a fresh snapshot"));
      refresh();
    }
  } catch (const json::exception& e) {
    // A relay (or something posing as one) sent a field of the wrong type:
    // skip that message, keep the rest.
    emit(effect(HitlEffect::Kind::kWarning, {}, "ignoring a message from the relay: " + std::string(e.what())));
  }
}

void HitlClient::on_snapshot(const json& message, double now) {
  // Decisions sent on an earlier connection; --auto may add new ones below,
  // which must not go out twice.
  const bool first = !got_snapshot_;
  std::set<std::string> earlier;
  if (first)
    for (const auto& [id, sent] : sent_) earlier.insert(id);
  std::set<std::string> listed;
  auto pending = message.find("pending");
  if (pending != message.end() && pending->is_array()) {
    for (const auto& interrupt : *pending) {
      std::string id = id_of(interrupt);
      if (id.empty()) continue;
      listed.insert(id);
      std::optional<double> expires_in;
      if (interrupt.contains("expires_in") && interrupt["expires_in"].is_number())
        expires_in = interrupt["expires_in"].get<double>();
      on_interrupt(interrupt, expires_in, now);
    }
  }
  std::vector<std::string> gone;
  for (const auto& [id, item] : pending_)
    if (!listed.count(id)) gone.push_back(id);
  for (const auto& id : gone) withdraw(id, "no longer pending");
  got_snapshot_ = true;
  if (first) {
    // Decisions sent before a reconnect: send again what is still pending.
    for (auto it = sent_.begin(); it != sent_.end();) {
      if (!earlier.count(it->first)) {
        ++it;
      } else if (pending_.count(it->first)) {
        send(it->second.decision);
        ++it;
      } else {
        emit(effect(HitlEffect::Kind::kLost, it->first));
        it = sent_.erase(it);
      }
    }
  }
  emit(effect(HitlEffect::Kind::kSnapshot));
}

void HitlClient::on_interrupt(const json& interrupt, std::optional<double> expires_in, double now) {
  std::string id = id_of(interrupt);
  if (id.empty()) return;
  if (pending_.count(id)) return;  // already known (snapshot then history)
  // The UI relies on this shape (ws-relay checks it too): anything else is
  // skipped here rather than half-shown.
  const json& actions = hitl_actions(interrupt);
  bool well_formed = !actions.empty();
  for (const auto& action : actions)
    if (!action.is_object() || !action.contains("name") || !action["name"].is_string()) well_formed = false;
  if (!well_formed) {
    emit(effect(HitlEffect::Kind::kWarning, id, id + ": ignoring an interrupt without well-formed action_requests"));
    return;
  }
  Item item;
  item.interrupt = interrupt;
  item.interrupt.erase("expires_in");
  item.timeout = kHitlDefaultTimeout;
  if (interrupt.contains("timeout") && interrupt["timeout"].is_number()) item.timeout = interrupt["timeout"].get<double>();
  item.deadline = now + (expires_in ? *expires_in : item.timeout);
  pending_[id] = std::move(item);
  order_.push_back(id);
  if (auto_applies(pending_[id].interrupt)) {
    try_auto(id);
  } else {
    HitlEffect queued = effect(HitlEffect::Kind::kQueued, id);
    queued.names = hitl_action_names(pending_[id].interrupt);
    queued.live = got_snapshot_;
    emit(std::move(queued));
  }
  // Stdin decisions that came before their interrupt, in the order read.
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->id != id) {
      ++it;
      continue;
    }
    Held held = std::move(*it);
    it = held_.erase(it);
    submit(held.short_form, held.id, held.line);
    it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.id == id; });
  }
}

bool HitlClient::is_ours(const json& decision) const {
  if (!connected_) return false;
  auto client = decision.find("client");
  if (client != decision.end() && client->is_string() && !local_address_.empty())
    return client->get<std::string>() == local_address_;
  return decision.value("decided_by", std::string()) == options_.decided_by;
}

void HitlClient::on_decision(const json& decision) {
  std::string id = id_of(decision);
  if (id.empty()) return;
  auto sent = sent_.find(id);
  if (sent != sent_.end() && is_ours(decision)) {
    HitlEffect accepted = effect(HitlEffect::Kind::kAccepted, id);
    accepted.message = decision;
    accepted.source = sent->second.source;
    accepted.line = sent->second.line;
    sent_.erase(sent);
    pending_.erase(id);
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    emit(std::move(accepted));
    return;
  }
  if (!pending_.count(id)) return;
  std::string why;
  if (decision.value("timed_out", false)) {
    why = "timed out";
  } else {
    std::string who = decision.value("decided_by", std::string());
    if (who.empty()) who = decision.value("client", std::string("someone else"));
    why = hitl_decision_verbs(decision) + " by " + who;
  }
  withdraw(id, why);
}

void HitlClient::on_error(const json& error) {
  std::string id = id_of(error);
  std::string text = error.value("error", std::string("error"));
  if (error.contains("reason") && error["reason"].is_string()) text += " (" + error["reason"].get<std::string>() + ")";
  auto sent = sent_.find(id);
  if (id.empty() || sent == sent_.end()) {
    emit(effect(HitlEffect::Kind::kWarning, id, "relay: " + text + (id.empty() ? "" : " [" + id + "]")));
    return;
  }
  HitlEffect refused = effect(HitlEffect::Kind::kRefused, id, text);
  refused.source = sent->second.source;
  refused.line = sent->second.line;
  sent_.erase(sent);
  emit(std::move(refused));
  if (error.value("error", std::string()) == "not pending") withdraw(id, "not pending");
}

void HitlClient::withdraw(const std::string& id, const std::string& why) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  HitlEffect withdrawn = effect(HitlEffect::Kind::kWithdrawn, id, why);
  withdrawn.names = hitl_action_names(it->second.interrupt);
  pending_.erase(it);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
  emit(std::move(withdrawn));
}

bool HitlClient::auto_applies(const json& interrupt) const {
  if (options_.auto_decision.empty()) return false;
  const json& actions = hitl_actions(interrupt);
  if (actions.empty()) return false;
  for (const auto& action : actions) {
    std::string name = action.value("name", std::string());
    bool matched = options_.match.empty();
    for (const auto& glob : options_.match)
      if (::fnmatch(glob.c_str(), name.c_str(), 0) == 0) matched = true;
    if (!matched) return false;
    auto allowed = allowed_decisions(interrupt, name);
    if (std::find(allowed.begin(), allowed.end(), options_.auto_decision) == allowed.end()) return false;
  }
  return true;
}

void HitlClient::try_auto(const std::string& id) {
  if (auto_tried_.count(id) || sent_.count(id)) return;
  auto_tried_.insert(id);
  const json& interrupt = pending_.at(id).interrupt;
  json short_form = {{"interrupt_id", id}, {"type", options_.auto_decision}};
  if (options_.auto_decision == "reject") short_form["message"] = "rejected by hitl-approve --auto";
  std::string error;
  auto full = expand_decision(interrupt, short_form, options_.decided_by, error);
  if (!full) {
    emit(effect(HitlEffect::Kind::kWarning, id, id + ": " + error));
    return;
  }
  // Kept even if the send fails: the socket is then broken, and after the
  // reconnect the decision is sent again if its interrupt is still pending.
  sent_[id] = Sent{*full, HitlSource::kAuto, 0};
  send(*full);
}

void HitlClient::on_input_line(std::string_view raw, long number, double now) {
  std::string line(raw);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return;
  json short_form = json::parse(line, nullptr, false);
  auto line_error = [&](std::string text) {
    HitlEffect e = effect(HitlEffect::Kind::kLineError, {}, std::move(text));
    e.line = number;
    emit(std::move(e));
  };
  if (short_form.is_discarded() || !short_form.is_object()) return line_error("not a JSON object");
  std::string id = id_of(short_form);
  if (id.empty()) return line_error("needs a string interrupt_id");
  if (!pending_.count(id) && !sent_.count(id)) {
    held_.push_back(Held{std::move(short_form), id, number, now});
    emit(effect(HitlEffect::Kind::kNote, id,
                "line " + std::to_string(number) + ": " + id + " is not pending yet; held for up to " +
                    duration_text(options_.hold_timeout)));
    return;
  }
  submit(short_form, id, number);
}

void HitlClient::submit(const json& short_form, const std::string& id, long line) {
  auto line_error = [&](std::string text) {
    HitlEffect e = effect(HitlEffect::Kind::kLineError, id, std::move(text));
    e.line = line;
    emit(std::move(e));
  };
  if (sent_.count(id)) return line_error("a decision for " + id + " was already sent");
  auto it = pending_.find(id);
  if (it == pending_.end()) return line_error(id + " is not pending");
  std::string error;
  auto full = expand_decision(it->second.interrupt, short_form, options_.decided_by, error);
  if (!full) return line_error(id + ": " + error);
  sent_[id] = Sent{*full, HitlSource::kStdin, line};  // sent again after a reconnect if need be
  send(*full);
}

void HitlClient::decide(const std::string& id, json decisions) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  const json& interrupt = it->second.interrupt;
  json decision = {{"type", "decision"}, {"interrupt_id", id}, {"decisions", std::move(decisions)}};
  if (interrupt.contains("thread_id") && interrupt["thread_id"].is_string())
    decision["thread_id"] = interrupt["thread_id"];
  decision["decided_by"] = options_.decided_by;
  sent_[id] = Sent{decision, HitlSource::kPrompt, 0};  // sent again after a reconnect if need be
  send(decision);
}

void HitlClient::tick(double now) {
  for (auto& [id, item] : pending_) {
    if (item.warned || sent_.count(id)) continue;
    double left = item.deadline - now;
    if (left <= hitl_warn_threshold(item.timeout)) {
      item.warned = true;
      HitlEffect warning = effect(HitlEffect::Kind::kTimingOut, id);
      warning.names = hitl_action_names(item.interrupt);
      warning.seconds = std::max(0.0, left);
      emit(std::move(warning));
    }
  }
  while (!held_.empty() && now - held_.front().since >= options_.hold_timeout) {
    Held held = std::move(held_.front());
    held_.pop_front();
    HitlEffect e = effect(HitlEffect::Kind::kLineError, held.id,
                          held.id + " is not pending (waited " + duration_text(options_.hold_timeout) + " for it)");
    e.line = held.line;
    emit(std::move(e));
  }
}

std::optional<double> HitlClient::next_tick() const {
  std::optional<double> next;
  auto consider = [&](double t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& [id, item] : pending_)
    if (!item.warned && !sent_.count(id)) consider(item.deadline - hitl_warn_threshold(item.timeout));
  if (!held_.empty()) consider(held_.front().since + options_.hold_timeout);
  return next;
}

const HitlClient::Item* HitlClient::find(const std::string& id) const {
  auto it = pending_.find(id);
  return it == pending_.end() ? nullptr : &it->second;
}

HitlClient::Item* HitlClient::find(const std::string& id) {
  auto it = pending_.find(id);
  return it == pending_.end() ? nullptr : &it->second;
}

std::optional<std::string> HitlClient::next_to_ask(std::size_t* skipped) const {
  std::size_t passed = 0;
  std::optional<std::string> next;
  for (const auto& id : order_) {
    if (sent_.count(id) || auto_tried_.count(id)) continue;
    if (pending_.at(id).skipped) {
      ++passed;
      continue;
    }
    next = id;
    break;
  }
  if (skipped) *skipped = passed;
  return next;
}

std::size_t HitlClient::waiting_count() const {
  std::size_t waiting = 0;
  for (const auto& [id, item] : pending_)
    if (!sent_.count(id) && !auto_tried_.count(id)) ++waiting;
  return waiting;
}

void HitlClient::unskip_all() {
  for (auto& [id, item] : pending_) item.skipped = false;
}

std::vector<std::string> HitlClient::unanswered() const {
  std::vector<std::string> ids;
  for (const auto& [id, sent] : sent_) ids.push_back(id);
  return ids;
}

}  // namespace smws
