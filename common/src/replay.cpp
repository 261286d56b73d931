#include "smws/replay.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

namespace smws::replay {

double Schedule::next(std::optional<double> timestamp) {
  if (timestamp) {
    if (have_last_) {
      double gap = *timestamp - last_;
      if (!(gap > 0)) gap = 0;  // backwards, or NaN from inf - inf
      if (max_gap_ >= 0 && gap > max_gap_) gap = max_gap_;
      elapsed_ += gap;
    }
    last_ = *timestamp;
    have_last_ = true;
  }
  return elapsed_ / speed_;
}

namespace {

// A JSON number's text (as scan() validated it) as a double; nullopt for any
// other value (a string, null, an object...).
std::optional<double> number_value(std::string_view raw) {
  if (raw.empty() || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))) return std::nullopt;
  char buf[64];
  std::string long_copy;
  const char* s = buf;
  if (raw.size() < sizeof buf) {
    raw.copy(buf, raw.size());
    buf[raw.size()] = '\0';
  } else {
    long_copy.assign(raw);
    s = long_copy.c_str();
  }
  return std::strtod(s, nullptr);
}

}  // namespace

void classify(std::string_view bytes, event::Scan* scan, Line* out) {
  *out = Line{};
  auto text = event::trim(bytes);
  if (text.empty()) return;
  event::Members members;
  if (!event::scan(text, scan, &members)) {
    out->kind = LineKind::kBad;
    out->error = scan->error;
    return;
  }
  out->kind = LineKind::kEvent;
  out->text = text;
  out->has_timestamp = scan->has_timestamp;
  if (!scan->has_timestamp) return;
  if (members.settled) {
    out->stamp_pos = static_cast<size_t>(members.timestamp.data() - text.data());
    out->stamp_len = members.timestamp.size();
    out->timestamp = number_value(members.timestamp);
    return;
  }
  // Rare (escapes in keys, deep nesting): ask a DOM.
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_object()) {
    auto ts = j.find("timestamp");
    if (ts != j.end() && ts->is_number()) out->timestamp = ts->get<double>();
  }
}

void build_datagram(std::string* out, const Line& line, std::string_view now_json, bool keep) {
  if (!line.has_timestamp) {
    event::append_with_field(out, line.text, "timestamp", now_json);
    return;
  }
  if (keep) {
    out->append(line.text);
    return;
  }
  if (line.stamp_pos != std::string_view::npos) {
    out->append(line.text.substr(0, line.stamp_pos));
    out->append(now_json);
    out->append(line.text.substr(line.stamp_pos + line.stamp_len));
    return;
  }
  std::string event(line.text);
  std::string error;
  if (event::set_member(&event, "timestamp", now_json, &error)) out->append(event);
  else out->append(line.text);  // cannot happen for a scan()-valid event
}

}  // namespace smws::replay
