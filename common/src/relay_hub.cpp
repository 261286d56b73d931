#include "smws/relay_hub.h"

#include <utility>

namespace smws::core {

using nlohmann::json;

namespace {

constexpr std::string_view kWhitespace = " \t\r\n";

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kWhitespace);
  return s.substr(first, last - first + 1);
}

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

// Validates an event without building a DOM: an object whose top-level
// "type" is a non-empty string. Also notes whether a top-level "seq" exists.
// Strings are UTF-8-checked by nlohmann's lexer, so a line that passes is
// safe to send as a WebSocket text frame byte for byte.
class EventSax {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return scalar(); }
  bool boolean(bool) { return scalar(); }
  bool number_integer(number_integer_t) { return scalar(); }
  bool number_unsigned(number_unsigned_t) { return scalar(); }
  bool number_float(number_float_t, const string_t&) { return scalar(); }
  bool binary(binary_t&) { return scalar(); }
  bool string(string_t& value) {
    if (depth_ == 1 && key_is_type_) {
      type_ = std::move(value);
      type_is_string_ = true;
      key_is_type_ = false;
      return true;
    }
    return scalar();
  }
  bool start_object(std::size_t) {
    if (depth_ == 0) root_is_object_ = true;
    if (depth_ == 1 && key_is_type_) {
      type_is_string_ = false;
      type_.clear();
    }
    ++depth_;
    key_is_type_ = false;
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 1 && key_is_type_) {
      type_is_string_ = false;
      type_.clear();
    }
    ++depth_;
    key_is_type_ = false;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(string_t& k) {
    if (depth_ == 1) {
      key_is_type_ = (k == "type");
      if (key_is_type_) type_seen_ = true;
      if (k == "seq") has_seq_ = true;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error_ = describe_parse_error(ex.what());
    return false;
  }

  std::string error_;
  std::string type_;
  bool root_is_object_ = false;
  bool type_seen_ = false;
  bool type_is_string_ = false;
  bool has_seq_ = false;

 private:
  bool scalar() {
    if (depth_ == 1 && key_is_type_) {  // "type" is a number, bool or null
      type_is_string_ = false;
      type_.clear();
    }
    key_is_type_ = false;
    return true;
  }
  int depth_ = 0;
  bool key_is_type_ = false;
};

// What is wrong with an event's `type`, or "" when it is a non-empty string.
std::string check_type(bool seen, bool is_string, const std::string& type) {
  if (!seen) return "no \"type\" field";
  if (!is_string) return "\"type\" is not a string";
  if (type.empty()) return "\"type\" is empty";
  return {};
}

std::string error_reply(std::string_view why) {
  return json{{"type", "error"}, {"error", why}}.dump();
}

}  // namespace

RelayHub::RelayHub(HubOptions options) : options_(options) {}

void RelayHub::set_interceptor(std::string type, Interceptor fn) {
  interceptors_[std::move(type)] = std::move(fn);
}

void RelayHub::set_pending_provider(std::function<std::string(double)> fn) {
  pending_provider_ = std::move(fn);
}

IngestResult RelayHub::ingest(std::string_view line, double now) {
  ++lines_;
  IngestResult result;
  const auto text = trim(line);
  if (text.empty()) return result;  // kBlank

  auto invalid = [&](std::string why) {
    ++invalid_lines_;
    result.status = IngestResult::Status::kInvalid;
    result.error = "line " + std::to_string(lines_) + ": " + why;
    return result;
  };

  // Hot path: a SAX pass validates without allocating a DOM. Only an event
  // that may update the machine table (its text mentions state_change) is
  // parsed into a DOM instead, since its state and data are needed anyway.
  json dom;
  bool have_dom = false;
  bool has_seq_key = false;
  if (text.find("state_change") != std::string_view::npos) {
    try {
      dom = json::parse(text);
    } catch (const json::parse_error& e) {
      return invalid("not JSON: " + describe_parse_error(e.what()));
    }
    if (!dom.is_object()) return invalid(std::string("not a JSON object (") + json_kind(dom) + ")");
    const auto it = dom.find("type");
    const bool seen = it != dom.end();
    const bool is_string = seen && it->is_string();
    result.type = is_string ? it->get<std::string>() : std::string();
    if (auto why = check_type(seen, is_string, result.type); !why.empty()) return invalid(why);
    has_seq_key = dom.contains("seq");
    have_dom = true;
  } else {
    EventSax sax;
    if (!json::sax_parse(text, &sax)) return invalid("not JSON: " + sax.error_);
    if (!sax.root_is_object_) {
      // Rare: name the kind for the message.
      return invalid(std::string("not a JSON object (") + json_kind(json::parse(text)) + ")");
    }
    if (auto why = check_type(sax.type_seen_, sax.type_is_string_, sax.type_); !why.empty()) {
      return invalid(why);
    }
    result.type = std::move(sax.type_);
    has_seq_key = sax.has_seq_;
  }

  std::string event(text);
  if (auto hook = interceptors_.find(result.type); hook != interceptors_.end()) {
    auto verdict = hook->second(event, now);
    if (!verdict.ok) {
      result.status = IngestResult::Status::kRefused;
      result.error = "line " + std::to_string(lines_) + ": " + verdict.error;
      return result;
    }
    if (!verdict.replacement.empty()) {
      event = std::move(verdict.replacement);
      dom = json::parse(event);  // the interceptor promises a JSON object
      have_dom = true;
      has_seq_key = dom.contains("seq");
    }
  }

  ++events_in_;
  result.status = IngestResult::Status::kBroadcast;
  result.payload =
      commit(std::move(event), have_dom ? &dom : nullptr, has_seq_key, now, &result.seq);
  return result;
}

Payload RelayHub::publish(std::string_view json_object, double now) {
  auto dom = json::parse(json_object);
  const bool has_seq_key = dom.contains("seq");
  uint64_t seq = 0;
  return commit(std::string(json_object), &dom, has_seq_key, now, &seq);
}

Payload RelayHub::commit(std::string text, json* dom, bool has_seq_key, double now,
                         uint64_t* seq_out) {
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
  if (dom && dom->is_object()) {
    const auto type = dom->find("type");
    const auto id = dom->find("machine_id");
    if (type != dom->end() && *type == "state_change" && id != dom->end() && id->is_string()) {
      apply_state_change(*dom, now);
    }
  }
  auto payload = std::make_shared<const std::string>(std::move(text));
  if (options_.history > 0) {
    history_.push_back(Held{seq, payload});
    while (history_.size() > options_.history) history_.pop_front();
  }
  return payload;
}

void RelayHub::apply_state_change(const json& event, double now) {
  const auto& id = event["machine_id"].get_ref<const std::string&>();
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
  const auto state = event.find("state");
  const auto previous = event.find("previous_state");
  if (state != event.end()) {
    m->previous_state = previous != event.end() ? *previous : m->current_state;
    m->current_state = *state;
  } else if (previous != event.end()) {
    m->previous_state = *previous;
  }
  const auto data = event.find("data");
  m->data = data != event.end() ? *data : json::object();
  const auto timestamp = event.find("timestamp");
  m->last_activity = (timestamp != event.end() && timestamp->is_number()) ? *timestamp : json(now);

  m->json = "{\"id\":" + json(m->id).dump() + ",\"current_state\":" + m->current_state.dump() +
            ",\"previous_state\":" + m->previous_state.dump() +
            ",\"last_activity\":" + m->last_activity.dump() + ",\"data\":" + m->data.dump() + "}";
  machines_dirty_ = true;
}

Payload RelayHub::snapshot(double now) const {
  if (machines_dirty_) {
    machines_json_.clear();
    for (const auto& m : machine_order_) {
      if (!machines_json_.empty()) machines_json_ += ',';
      machines_json_ += m.json;
    }
    machines_dirty_ = false;
  }
  std::string out;
  out.reserve(machines_json_.size() + 96);
  out += "{\"type\":\"initial\",\"machines\":[";
  out += machines_json_;
  out += "],\"pending\":";
  out += pending_provider_ ? pending_provider_(now) : std::string("[]");
  out += ",\"timestamp\":";
  out += json(now).dump();
  if (options_.seq) {
    out += ",\"seq\":";
    out += std::to_string(last_seq());
  }
  out += '}';
  return std::make_shared<const std::string>(std::move(out));
}

std::vector<Payload> RelayHub::on_connect(std::optional<uint64_t> since, double now) const {
  std::vector<Payload> out;
  const uint64_t last = last_seq();
  if (since && options_.seq && *since <= last) {
    const uint64_t n = *since;
    if (n == last) return out;
    const uint64_t first_held = history_.empty() ? last + 1 : history_.front().seq;
    if (n + 1 >= first_held) {
      for (const auto& held : history_) {
        if (held.seq > n) out.push_back(held.payload);
      }
      return out;
    }
    const uint64_t newest_gone = first_held - 1;
    out.push_back(std::make_shared<const std::string>(
        "{\"type\":\"gap\",\"from\":" + std::to_string(n + 1) +
        ",\"to\":" + std::to_string(newest_gone) + "}"));
    out.push_back(snapshot(now));
    for (const auto& held : history_) out.push_back(held.payload);  // all are > newest_gone
    return out;
  }
  out.reserve(history_.size() + 1);
  out.push_back(snapshot(now));
  for (const auto& held : history_) out.push_back(held.payload);
  return out;
}

ClientMessage RelayHub::classify_client_message(std::string_view text) {
  ClientMessage msg;
  try {
    msg.json = json::parse(text);
  } catch (const json::parse_error& e) {
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
  }
  msg.kind = ClientMessage::Kind::kForward;
  msg.line = msg.json.dump();
  msg.line += '\n';
  return msg;
}

}  // namespace smws::core
