// SPDX-License-Identifier: Apache-2.0
#include "smws/relay_hub.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "smws/event.h"

namespace smws {

using nlohmann::json;

namespace {

// nlohmann's messages start "[json.exception.parse_error.101] parse error at
// line 1, column 5: syntax error ..."; a stdin line is one line, so keep
// "column 5: syntax error ...".
std::string describe_parse_error(const std::string& what) {
  auto pos = what.find("column ");
  if (pos != std::string::npos) return what.substr(pos);
  pos = what.find("] ");
  return pos == std::string::npos ? what : what.substr(pos + 2);
}

const char* json_kind(const json& j) {
  switch (j.type()) {
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::null: return "null";
    default: return "a number";
  }
}

std::string error_reply(std::string_view why) {
  // nlohmann's parse errors quote the bytes read, which can end inside a
  // UTF-8 character: replace what is not UTF-8 rather than throw (found by
  // tests/fuzz/relay_client_fuzz).
  return json{{"type", "error"}, {"error", why}}.dump(-1, ' ', false,
                                                      json::error_handler_t::replace);
}

// The decoded machine_id of a parsed event, when it is a string.
std::optional<std::string> machine_of(const json& dom) {
  if (!dom.is_object()) return std::nullopt;
  const auto id = dom.find("machine_id");
  if (id == dom.end() || !id->is_string()) return std::nullopt;
  return id->get<std::string>();
}

}  // namespace

RelayHub::RelayHub(HubOptions options)
    : options_(options),
      machine_history_(options.machine_history, options.machine_history_bytes) {}

void RelayHub::set_interceptor(std::string type, Interceptor fn) {
  interceptors_[std::move(type)] = std::move(fn);
}

void RelayHub::set_pending_provider(std::function<std::string(double)> fn) {
  pending_provider_ = std::move(fn);
}

IngestResult RelayHub::check(std::string_view line, double now, uint64_t line_number) {
  return ingest_line(line, now, line_number, false);
}

IngestResult RelayHub::ingest_line(std::string_view line, double now, uint64_t line_number,
                                   bool do_commit) {
  ++lines_;
  const uint64_t number = line_number > 0 ? line_number : lines_;
  IngestResult result;
  const auto text = event::trim(line);
  if (text.empty()) return result;  // kBlank

  auto invalid = [&](const std::string& why) {
    ++invalid_lines_;
    result.status = IngestResult::Status::kInvalid;
    result.error = "line " + std::to_string(number) + ": " + why;
    return result;
  };

  // Hot path: event::scan's fast pass settles the common event without
  // allocating and hands back a state_change's raw members for the machine
  // table; what it cannot settle goes to nlohmann's SAX parser (inside
  // event::scan), which decides and names the error. A DOM is built only
  // when needed: for a state_change that cannot be tabled from raw members
  // (escaped machine_id, an event that is not plain, or the slow path), or
  // under --seq for an event that has (on the slow path: may have; the
  // substring test is cheap and a backslash-u covers an escaped key) a
  // top-level "seq" to replace.
  event::Members raw;
  if (!event::scan(text, &scan_, &raw)) return invalid(scan_.error);
  result.type = scan_.type;
  json dom;
  bool have_dom = false;
  bool has_seq_key = false;
  bool need_dom_for_seq = false;
  bool raw_machine = false;  // a state_change tabled from `raw`, without a DOM
  bool need_dom_for_machine = false;
  if (raw.settled) {
    has_seq_key = raw.has_seq;
    need_dom_for_seq = options_.seq && has_seq_key;
  } else {
    need_dom_for_seq = options_.seq && (text.find("\"seq\"") != std::string_view::npos ||
                                        text.find("\\u") != std::string_view::npos);
  }
  if (result.type == "state_change") {
    if (!raw.settled || !raw.plain) {
      need_dom_for_machine = true;
    } else if (!raw.machine_id.empty() && raw.machine_id[0] == '"') {
      // An id with escapes is decoded by the DOM; the common one is not.
      raw_machine = raw.machine_id.find('\\') == std::string_view::npos;
      need_dom_for_machine = !raw_machine;
    }
  }
  // The machine_id for subscription filters: a view of the raw string on
  // the fast path (decoded through the DOM only when it holds escapes); an
  // event the fast path did not settle is parsed when it may have one.
  bool need_dom_for_id = false;
  if (raw.settled) {
    if (!raw.machine_id.empty() && raw.machine_id[0] == '"') {
      if (raw.machine_id.find('\\') == std::string_view::npos) {
        result.machine.emplace(raw.machine_id.substr(1, raw.machine_id.size() - 2));
      } else {
        need_dom_for_id = true;
      }
    }
  } else {
    need_dom_for_id = text.find("machine") != std::string_view::npos ||
                      text.find("\\u") != std::string_view::npos;
  }
  if (need_dom_for_machine || need_dom_for_seq || need_dom_for_id) {
    dom = json::parse(text);  // cannot throw: the bytes were accepted above
    have_dom = true;
    has_seq_key = dom.contains("seq");
    if (need_dom_for_id) result.machine = machine_of(dom);
  }

  std::string event(text);
  if (auto hook = interceptors_.find(result.type); hook != interceptors_.end()) {
    auto verdict = hook->second(event, now);
    if (!verdict.ok) {
      result.status = IngestResult::Status::kRefused;
      result.error = "line " + std::to_string(number) + ": " + verdict.error;
      return result;
    }
    if (!verdict.replacement.empty()) {
      dom = json::parse(verdict.replacement, nullptr, /*allow_exceptions=*/false);
      if (!dom.is_object()) {  // a bug in the interceptor: refuse, do not throw
        result.status = IngestResult::Status::kRefused;
        result.error = "line " + std::to_string(number) + ": " + result.type +
                       " interceptor returned something that is not a JSON object";
        return result;
      }
      event = std::move(verdict.replacement);
      have_dom = true;
      result.machine = machine_of(dom);
      has_seq_key = dom.contains("seq");
      raw_machine = false;  // the views point into the old text: table from the DOM
    }
    if (verdict.hold) {
      ++events_in_;
      result.status = IngestResult::Status::kHeld;
      result.payload = std::make_shared<const std::string>(std::move(event));
      return result;
    }
  }

  ++events_in_;
  result.status = IngestResult::Status::kBroadcast;
  if (!do_commit) {
    result.payload = std::make_shared<const std::string>(std::move(event));
    return result;
  }
  result.payload =
      commit(std::move(event), have_dom ? &dom : nullptr, has_seq_key, now, &result.seq,
             raw_machine ? &raw : nullptr, result.type,
             result.machine ? &*result.machine : nullptr);
  return result;
}

Payload RelayHub::publish(std::string_view json_object, double now) {
  auto dom = json::parse(json_object, nullptr, /*allow_exceptions=*/false);
  if (!dom.is_object()) return nullptr;
  const bool has_seq_key = dom.contains("seq");
  uint64_t seq = 0;
  const auto type = dom.find("type");
  const std::string type_text = type != dom.end() && type->is_string() ? type->get<std::string>() : "";
  const auto machine = machine_of(dom);
  return commit(std::string(json_object), &dom, has_seq_key, now, &seq, nullptr, type_text,
                machine ? &*machine : nullptr);
}

Payload RelayHub::apply(uint64_t seq, std::string_view json_object, double now, Applied* applied) {
  next_seq_ = seq;
  const auto text = event::trim(json_object);
  event::Members raw;
  // The relay that appended the event checked it, so scan() fails only on
  // an entry some other writer put in the stream: dropped like publish()
  // drops what is not an object.
  if (!event::scan(text, &scan_, &raw)) return nullptr;
  // The DOM only where ingest() needs one too: an event the fast pass did
  // not settle, a "seq" of its own to replace, a machine_id with escapes,
  // or a state_change that cannot be tabled from its raw members.
  const bool string_id = raw.settled && !raw.machine_id.empty() && raw.machine_id[0] == '"';
  const bool escaped_id = string_id && raw.machine_id.find('\\') != std::string_view::npos;
  const bool state_change = scan_.type == "state_change";
  if (!raw.settled || raw.has_seq || escaped_id || (state_change && !raw.plain)) {
    auto dom = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!dom.is_object()) return nullptr;
    const auto machine = machine_of(dom);
    if (applied) *applied = Applied{scan_.type, machine};
    uint64_t stamped = 0;
    return commit(std::string(text), &dom, dom.contains("seq"), now, &stamped, nullptr, scan_.type,
                  machine ? &*machine : nullptr);
  }
  std::optional<std::string> machine;
  if (string_id) machine.emplace(raw.machine_id.substr(1, raw.machine_id.size() - 2));
  uint64_t stamped = 0;
  Payload p = commit(std::string(text), nullptr, false, now, &stamped,
                     state_change && machine ? &raw : nullptr, scan_.type,
                     machine ? &*machine : nullptr);
  if (applied) *applied = Applied{scan_.type, std::move(machine)};
  return p;
}

void RelayHub::table(std::string_view json_object, double now) {
  auto dom = json::parse(json_object, nullptr, /*allow_exceptions=*/false);
  if (!dom.is_object()) return;
  const auto type = dom.find("type");
  const auto id = dom.find("machine_id");
  if (type == dom.end() || *type != "state_change" || id == dom.end() || !id->is_string()) return;
  std::string state, previous, timestamp, data;
  event::Members f;
  auto take = [&](const char* key, std::string* store, std::string_view* view) {
    if (auto it = dom.find(key); it != dom.end()) *view = *store = it->dump();
  };
  take("state", &state, &f.state);
  take("previous_state", &previous, &f.previous_state);
  take("timestamp", &timestamp, &f.timestamp);
  take("data", &data, &f.data);
  apply_state_change(id->get<std::string>(), f, now);
}

Payload RelayHub::commit(std::string text, json* dom, bool has_seq_key, double now,
                         uint64_t* seq_out, const event::Members* machine,
                         std::string_view type, const std::string* machine_id) {
  // Tabled first: `machine` views the caller's line, not `text`.
  if (machine) {
    const auto& id = machine->machine_id;
    apply_state_change(std::string(id.substr(1, id.size() - 2)), *machine, now);
  }
  const uint64_t seq = next_seq_++;
  if (options_.seq) {
    *seq_out = seq;
    if (has_seq_key) {
      // The event already has a "seq" (e.g. from an upstream relay): ours
      // replaces it rather than producing a duplicate key.
      json parsed = dom ? std::move(*dom) : json::parse(text);
      parsed["seq"] = seq;
      text = parsed.dump();
      if (dom) *dom = std::move(parsed);
    } else {
      // Insert after the opening brace: the rest of the bytes stay as received.
      text.insert(1, "\"seq\":" + std::to_string(seq) + ",");
    }
  }
  if (!machine && dom && dom->is_object()) {
    const auto type = dom->find("type");
    const auto id = dom->find("machine_id");
    if (type != dom->end() && *type == "state_change" && id != dom->end() && id->is_string()) {
      // Serialize the DOM's values so both paths table the same way.
      std::string state, previous, timestamp, data;
      event::Members f;
      auto take = [&](const char* key, std::string* store, std::string_view* view) {
        if (auto it = dom->find(key); it != dom->end()) *view = *store = it->dump();
      };
      take("state", &state, &f.state);
      take("previous_state", &previous, &f.previous_state);
      take("timestamp", &timestamp, &f.timestamp);
      take("data", &data, &f.data);
      apply_state_change(id->get<std::string>(), f, now);
    }
  }
  auto payload = std::make_shared<const std::string>(std::move(text));
  if (const size_t keep = std::max(options_.history, options_.hold); keep > 0) {
    history_.push_back(Held{seq, payload, std::string(type),
                            machine_id ? std::optional<std::string>(*machine_id) : std::nullopt});
    while (history_.size() > keep) history_.pop_front();
  }
  if (machine_id && machine_history_.enabled()) {
    machine_history_.add(*machine_id, type, seq, payload);
  }
  return payload;
}

void RelayHub::apply_state_change(const std::string& id, const event::Members& f,
                                  double now) {
  auto found = machine_index_.find(id);
  std::list<Machine>::iterator m;
  if (found == machine_index_.end()) {
    if (options_.max_machines > 0 && machine_order_.size() >= options_.max_machines) {
      machine_index_.erase(machine_order_.front().id);
      machine_order_.pop_front();
      ++machines_evicted_;
    }
    m = machine_order_.insert(machine_order_.end(), Machine{});
    m->id = id;
    machine_index_.emplace(id, m);
  } else {
    m = found->second;
    machine_order_.splice(machine_order_.end(), machine_order_, m);  // now most recent
  }

  // SPEC edge rules: current_state is the event's state; previous_state the
  // event's previous_state if given, else the former state. An event without
  // a state leaves current_state (and, unless given, previous_state) alone.
  if (!f.state.empty()) {
    if (!f.previous_state.empty()) {
      m->previous_state.assign(f.previous_state);
    } else {
      m->previous_state.swap(m->current_state);
    }
    m->current_state.assign(f.state);
  } else if (!f.previous_state.empty()) {
    m->previous_state.assign(f.previous_state);
  }
  if (!f.data.empty()) {
    m->data.assign(f.data);
  } else {
    m->data = "{}";
  }
  const char t0 = f.timestamp.empty() ? '\0' : f.timestamp[0];
  const bool numeric_timestamp = t0 == '-' || (t0 >= '0' && t0 <= '9');
  if (numeric_timestamp) {
    m->last_activity.assign(f.timestamp);
  } else {
    m->last_activity = json(now).dump();
  }

  m->json.clear();
  m->json += "{\"id\":";
  m->json += json(m->id).dump();
  m->json += ",\"current_state\":";
  m->json += m->current_state;
  m->json += ",\"previous_state\":";
  m->json += m->previous_state;
  m->json += ",\"last_activity\":";
  m->json += m->last_activity;
  m->json += ",\"data\":";
  m->json += m->data;
  m->json += '}';
  machines_dirty_ = true;
}

Payload RelayHub::snapshot(double now, const Filter* filter) const {
  const bool narrowed = filter && !filter->machines.empty();
  std::string narrowed_json;
  if (narrowed) {
    for (const auto& m : machine_order_) {
      if (!filter->shows_machine(m.id)) continue;
      if (!narrowed_json.empty()) narrowed_json += ',';
      narrowed_json += m.json;
    }
  } else if (machines_dirty_) {
    machines_json_.clear();
    for (const auto& m : machine_order_) {
      if (!machines_json_.empty()) machines_json_ += ',';
      machines_json_ += m.json;
    }
    machines_dirty_ = false;
  }
  const std::string& machines = narrowed ? narrowed_json : machines_json_;
  std::string out;
  out.reserve(machines.size() + 96);
  out += "{\"type\":\"initial\",\"machines\":[";
  out += machines;
  out += "],\"pending\":";
  const bool hitl = !filter || filter->hitl;
  out += pending_provider_ && hitl ? pending_provider_(now) : std::string("[]");
  out += ",\"timestamp\":";
  out += json(now).dump();
  if (options_.seq) {
    out += ",\"seq\":";
    out += std::to_string(last_seq());
  }
  out += '}';
  return std::make_shared<const std::string>(std::move(out));
}

void RelayHub::replay(const Filter* filter, uint64_t after, std::vector<Payload>* out) const {
  if (!filter) {
    for (const auto& held : history_) {
      if (held.seq > after) out->push_back(held.payload);
    }
    return;
  }
  std::vector<HeldEvent> per_machine;
  machine_history_.collect(*filter, after, &per_machine);
  // Two ascending runs merged by seq; an event in both goes out once.
  size_t j = 0;
  for (const auto& held : history_) {
    if (held.seq <= after || !filter->matches(held.type, held.machine ? &*held.machine : nullptr)) {
      continue;
    }
    while (j < per_machine.size() && per_machine[j].seq < held.seq) {
      out->push_back(per_machine[j++].payload);
    }
    if (j < per_machine.size() && per_machine[j].seq == held.seq) ++j;
    out->push_back(held.payload);
  }
  for (; j < per_machine.size(); ++j) out->push_back(per_machine[j].payload);
}

std::vector<Payload> RelayHub::on_connect(std::optional<uint64_t> since, double now,
                                          const Filter* filter) const {
  std::vector<Payload> out;
  const uint64_t last = last_seq();
  if (since && options_.seq && *since <= last && since_floor_ > 0 && *since <= since_floor_) {
    // From before the group's epoch: what came after it there may be lost.
    const uint64_t n = *since;
    if (n < since_floor_) {
      out.push_back(std::make_shared<const std::string>("{\"type\":\"gap\",\"from\":" + std::to_string(n + 1) +
                                                        ",\"to\":" + std::to_string(since_floor_) + "}"));
    }
    out.push_back(snapshot(now, filter));
    replay(filter, since_floor_, &out);
    return out;
  }
  if (since && options_.seq && *since <= last) {
    const uint64_t n = *since;
    if (n == last) return out;
    const uint64_t first_held = history_.empty() ? last + 1 : history_.front().seq;
    if (n + 1 >= first_held) {
      replay(filter, n, &out);
      return out;
    }
    const uint64_t newest_gone = first_held - 1;
    out.push_back(std::make_shared<const std::string>(
        "{\"type\":\"gap\",\"from\":" + std::to_string(n + 1) +
        ",\"to\":" + std::to_string(newest_gone) + "}"));
    out.push_back(snapshot(now, filter));
    // Every held event is > newest_gone; a machine's older ones the
    // snapshot already reflects.
    replay(filter, newest_gone, &out);
    return out;
  }
  out.reserve(history_.size() + 1);
  out.push_back(snapshot(now, filter));
  // A new client gets the last --history events; more may be held for
  // `?since=` (HubOptions::hold, a relay in a group).
  uint64_t after = 0;
  if (options_.hold > options_.history && history_.size() > options_.history) {
    after = history_[history_.size() - options_.history - 1].seq;
  }
  replay(filter, after, &out);
  return out;
}

std::vector<Payload> RelayHub::on_subscribe(const Filter& filter, double now) const {
  std::vector<Payload> out;
  out.push_back(snapshot(now, &filter));
  std::vector<HeldEvent> held;
  machine_history_.collect(filter, 0, &held);
  for (auto& h : held) out.push_back(std::move(h.payload));
  return out;
}

std::optional<uint64_t> RelayHub::parse_since(const std::string& text) {
  try {
    size_t used = 0;
    unsigned long long n = std::stoull(text, &used);
    if (used == text.size()) return n;
  } catch (const std::exception&) {
    // std::invalid_argument or std::out_of_range: not a number we can use.
  }
  return std::nullopt;
}

ClientMessage RelayHub::classify_client_message(std::string_view text) {
  ClientMessage msg;
  try {
    msg.json = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double
    // (1e400): both are "not JSON we take", as on stdin.
    msg.kind = ClientMessage::Kind::kError;
    msg.reply = error_reply("not JSON: " + describe_parse_error(e.what()));
    return msg;
  }
  if (!msg.json.is_object()) {
    msg.kind = ClientMessage::Kind::kError;
    msg.reply = error_reply(std::string("not a JSON object (") + json_kind(msg.json) + ")");
    return msg;
  }
  const auto type = msg.json.find("type");
  if (type != msg.json.end() && type->is_string()) {
    const auto& t = type->get_ref<const std::string&>();
    if (t == "refresh") {
      msg.kind = ClientMessage::Kind::kRefresh;
      return msg;
    }
    if (t == "pong") {
      msg.kind = ClientMessage::Kind::kPong;
      return msg;
    }
    if (t == "decision") {
      msg.kind = ClientMessage::Kind::kDecision;
      return msg;
    }
    if (t == "subscribe") {
      msg.kind = ClientMessage::Kind::kSubscribe;
      return msg;
    }
  }
  msg.kind = ClientMessage::Kind::kForward;
  // Compact, but in the client's key order (nlohmann::json sorts keys): a
  // second parse, which client messages (human or tool rate) can afford.
  msg.line = nlohmann::ordered_json::parse(text).dump();
  msg.line += '\n';
  return msg;
}

}  // namespace smws
