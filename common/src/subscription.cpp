// SPDX-License-Identifier: Apache-2.0
#include "smws/subscription.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace smws {

using nlohmann::json;

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative match with one backtrack point (the last '*'): linear in
  // practice, never exponential, no recursion.
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool is_hitl_type(std::string_view type) { return type == "interrupt" || type == "decision"; }

namespace {

bool any_match(const std::vector<std::string>& globs, std::string_view text) {
  for (const auto& g : globs) {
    if (is_glob(g) ? glob_match(g, text) : g == text) return true;
  }
  return false;
}

void add_unique(std::vector<std::string>* list, std::string glob) {
  if (std::find(list->begin(), list->end(), glob) == list->end()) list->push_back(std::move(glob));
}

bool all_exact(const std::vector<std::string>& globs) {
  return std::none_of(globs.begin(), globs.end(), [](const std::string& g) { return is_glob(g); });
}

}  // namespace

bool Filter::matches_type(std::string_view type) const {
  return types.empty() || any_match(types, type);
}

bool Filter::matches_machine(const std::string* machine) const {
  if (machines.empty()) return true;
  return machine != nullptr && any_match(machines, *machine);
}

bool Filter::matches(std::string_view type, const std::string* machine) const {
  if (is_hitl_type(type)) return hitl;
  return matches_type(type) && matches_machine(machine);
}

bool Filter::shows_machine(std::string_view id) const {
  return machines.empty() || any_match(machines, id);
}

std::string Filter::describe() const {
  // Globs are not UTF-8-checked: bytes that are not UTF-8 show as U+FFFD
  // instead of making dump() throw (found by tests/fuzz/subscription_fuzz).
  return json{{"types", types}, {"machines", machines}, {"hitl", hitl}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

Status parse_glob_list(std::string_view what, std::string_view csv,
                       std::vector<std::string>* out) {
  size_t start = 0;
  for (;;) {
    const size_t comma = csv.find(',', start);
    const std::string_view glob =
        csv.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (glob.empty()) {
      return Status::Error(Status::kUsage,
                           std::string(what) + "'" + std::string(csv) +
                               "': empty glob (a list is GLOB[,GLOB...], each non-empty)");
    }
    add_unique(out, std::string(glob));
    if (comma == std::string_view::npos) return Status::Ok();
    start = comma + 1;
  }
}

Status parse_route_filter(std::string_view text, Filter* out) {
  Filter f;
  if (text.empty()) {
    return Status::Error(Status::kUsage,
                         "empty filter (expected type:GLOB[,GLOB...] and/or machine:GLOB[,...] "
                         "joined by ';')");
  }
  size_t start = 0;
  for (;;) {
    const size_t semi = text.find(';', start);
    const std::string_view part =
        text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start);
    const size_t colon = part.find(':');
    if (colon == std::string_view::npos) {
      return Status::Error(Status::kUsage, "'" + std::string(part) +
                                               "': expected KEY:GLOB[,GLOB...] with KEY type or "
                                               "machine");
    }
    const std::string_view key = part.substr(0, colon);
    const std::string_view globs = part.substr(colon + 1);
    std::vector<std::string>* list = nullptr;
    if (key == "type") {
      list = &f.types;
    } else if (key == "machine") {
      list = &f.machines;
    } else {
      return Status::Error(Status::kUsage, "unknown key '" + std::string(key) +
                                               "' (a filter knows type and machine)");
    }
    Status s = parse_glob_list(std::string(key) + ":", globs, list);
    if (!s.ok()) return s;
    if (semi == std::string_view::npos) break;
    start = semi + 1;
  }
  *out = std::move(f);
  return Status::Ok();
}

Status parse_route(std::string_view spec, Route* out) {
  const std::string prefix = "--route '" + std::string(spec) + "': ";
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return Status::Error(Status::kUsage,
                         prefix + "expected PATH=FILTER, e.g. /api/v1/ws/queue=type:queue_update");
  }
  Route r;
  r.path = std::string(spec.substr(0, eq));
  if (r.path.empty() || r.path[0] != '/') {
    return Status::Error(Status::kUsage, prefix + "PATH must start with '/'");
  }
  if (r.path.find_first_of("?#") != std::string::npos) {
    return Status::Error(Status::kUsage, prefix + "PATH must not hold a query ('?') or '#'");
  }
  Status s = parse_route_filter(spec.substr(eq + 1), &r.filter);
  if (!s.ok()) return Status::Error(Status::kUsage, prefix + s.message);
  *out = std::move(r);
  return Status::Ok();
}

Status filter_from_query(const std::vector<std::pair<std::string, std::string>>& query,
                         const Filter& base, Filter* out) {
  Filter f = base;
  bool saw_type = false, saw_machine = false;
  for (const auto& [key, value] : query) {
    if (key == "type" || key == "machine") {
      const bool is_type = key == "type";
      bool& saw = is_type ? saw_type : saw_machine;
      std::vector<std::string>* list = is_type ? &f.types : &f.machines;
      if (!saw) list->clear();  // the query replaces the route's list
      saw = true;
      Status s = parse_glob_list("?" + key + "=", value, list);
      if (!s.ok()) {
        *out = base;
        return s;
      }
    } else if (key == "hitl") {
      if (value == "0" || value == "false") {
        f.hitl = false;
      } else if (value == "1" || value == "true") {
        f.hitl = true;
      } else {
        *out = base;
        return Status::Error(Status::kUsage, "?hitl='" + value + "': expected 0 or 1");
      }
    }
  }
  *out = std::move(f);
  return Status::Ok();
}

Status apply_subscribe(const json& message, Filter* filter) {
  Filter f = *filter;
  for (const char* key : {"types", "machines"}) {
    std::vector<std::string>* list = key[0] == 't' ? &f.types : &f.machines;
    list->clear();
    const auto it = message.find(key);
    if (it == message.end()) continue;
    bool ok = it->is_array();
    if (ok) {
      for (const auto& v : *it) {
        if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
          ok = false;
          break;
        }
        add_unique(list, v.get<std::string>());
      }
    }
    if (!ok) {
      return Status::Error(Status::kBadInput,
                           std::string("subscribe: \"") + key +
                               "\" must be a list of non-empty strings (globs); filters unchanged");
    }
  }
  *filter = std::move(f);
  return Status::Ok();
}

std::string filter_error_message(const Status& status) {
  // The message quotes the client's value, which need not be UTF-8
  // (?hitl=%80): replace such bytes, or dump() throws and the uncaught
  // type_error ends ws-relay (found by tests/fuzz/subscription_fuzz).
  return json{{"type", "error"}, {"error", status.message}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

// ---------------------------------------------------------------- index

void SubscriptionIndex::IdList::add(SubscriberId id) {
  if (pos.emplace(id, ids.size()).second) ids.push_back(id);
}

void SubscriptionIndex::IdList::erase(SubscriberId id) {
  auto it = pos.find(id);
  if (it == pos.end()) return;
  const size_t i = it->second;
  pos.erase(it);
  if (i + 1 != ids.size()) {
    ids[i] = ids.back();
    pos[ids[i]] = i;
  }
  ids.pop_back();
}

SubscriptionIndex::Kind SubscriptionIndex::kind_of(const Filter& f) {
  if (!f.machines.empty()) return all_exact(f.machines) ? Kind::kByMachine : Kind::kGlob;
  if (!f.types.empty()) return all_exact(f.types) ? Kind::kByType : Kind::kGlob;
  return Kind::kEveryone;
}

void SubscriptionIndex::unlink(SubscriberId id, const Entry& e) {
  switch (e.kind) {
    case Kind::kEveryone: everyone_.erase(id); break;
    case Kind::kByMachine:
      for (const auto& m : e.filter.machines) {
        auto it = by_machine_.find(m);
        if (it == by_machine_.end()) continue;
        (e.filter.types.empty() ? it->second.any_type : it->second.typed).erase(id);
        if (it->second.empty()) by_machine_.erase(it);
      }
      break;
    case Kind::kByType:
      for (const auto& t : e.filter.types) {
        auto it = by_type_.find(t);
        if (it == by_type_.end()) continue;
        it->second.erase(id);
        if (it->second.empty()) by_type_.erase(it);
      }
      break;
    case Kind::kGlob: globs_.erase(id); break;
  }
  if (!e.filter.hitl) --hitl_opt_outs_;
}

void SubscriptionIndex::set(SubscriberId id, Filter filter) {
  if (auto old = entries_.find(id); old != entries_.end()) {
    unlink(id, old->second);
    entries_.erase(old);
  }
  Entry e;
  e.kind = kind_of(filter);
  e.filter = std::move(filter);
  switch (e.kind) {
    case Kind::kEveryone: everyone_.add(id); break;
    case Kind::kByMachine:
      for (const auto& m : e.filter.machines) {
        MachineWatchers& w = by_machine_[m];
        (e.filter.types.empty() ? w.any_type : w.typed).add(id);
      }
      break;
    case Kind::kByType:
      for (const auto& t : e.filter.types) by_type_[t].add(id);
      break;
    case Kind::kGlob: globs_.add(id); break;
  }
  if (!e.filter.hitl) ++hitl_opt_outs_;
  entries_.emplace(id, std::move(e));
}

void SubscriptionIndex::remove(SubscriberId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  unlink(id, it->second);
  entries_.erase(it);
}

const Filter* SubscriptionIndex::find(SubscriberId id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.filter;
}

bool SubscriptionIndex::everyone_gets(std::string_view type) const {
  if (is_hitl_type(type)) return hitl_opt_outs_ == 0;
  return everyone_.size() == entries_.size();
}

void SubscriptionIndex::select(std::string_view type, const std::string* machine,
                               std::vector<SubscriberId>* out) const {
  if (is_hitl_type(type)) {
    // Rare (a human's rate): every client, minus the opted-out ones.
    out->reserve(out->size() + entries_.size() - hitl_opt_outs_);
    for (const auto& [id, e] : entries_) {
      if (e.filter.hitl) out->push_back(id);
    }
    return;
  }
  out->insert(out->end(), everyone_.ids.begin(), everyone_.ids.end());
  if (machine) {
    if (auto it = by_machine_.find(*machine); it != by_machine_.end()) {
      const MachineWatchers& w = it->second;
      out->insert(out->end(), w.any_type.ids.begin(), w.any_type.ids.end());
      for (SubscriberId id : w.typed.ids) {
        if (entries_.at(id).filter.matches_type(type)) out->push_back(id);
      }
    }
  }
  if (!by_type_.empty()) {
    // A std::string key: heterogeneous lookup needs C++20.
    if (auto it = by_type_.find(std::string(type)); it != by_type_.end()) {
      out->insert(out->end(), it->second.ids.begin(), it->second.ids.end());
    }
  }
  for (SubscriberId id : globs_.ids) {
    const Filter& f = entries_.at(id).filter;
    if (f.matches_type(type) && f.matches_machine(machine)) out->push_back(id);
  }
}

// ------------------------------------------------------- machine history

MachineHistory::MachineHistory(size_t per_machine, size_t max_bytes)
    : per_machine_(per_machine), max_bytes_(max_bytes) {}

void MachineHistory::evict_front() {
  Machine& m = order_.front();
  bytes_ -= m.bytes + m.id.size();
  events_ -= m.items.size();
  index_.erase(m.id);
  order_.pop_front();
  ++evictions_;
}

void MachineHistory::add(const std::string& machine, std::string_view type, uint64_t seq,
                         Payload payload) {
  if (!enabled() || !payload) return;
  auto found = index_.find(machine);
  std::list<Machine>::iterator m;
  if (found == index_.end()) {
    m = order_.insert(order_.end(), Machine{});
    m->id = machine;
    bytes_ += machine.size();
    index_.emplace(machine, m);
  } else {
    m = found->second;
    order_.splice(order_.end(), order_, m);  // most recently active now
  }
  Item item{seq, std::string(type), std::move(payload)};
  const size_t c = cost(item);
  m->items.push_back(std::move(item));
  m->bytes += c;
  bytes_ += c;
  ++events_;
  auto pop_oldest = [&] {
    const size_t old = cost(m->items.front());
    m->bytes -= old;
    bytes_ -= old;
    --events_;
    m->items.pop_front();
  };
  while (m->items.size() > per_machine_) pop_oldest();
  // Over the byte bound: whole histories of the least recently active
  // machines go first (never the one just added to, which is at the back).
  while (bytes_ > max_bytes_ && order_.size() > 1) evict_front();
  // Alone and still over: it keeps its newest events that fit (none, if
  // even the newest is larger than the whole bound).
  while (bytes_ > max_bytes_ && !m->items.empty()) pop_oldest();
  if (m->items.empty()) {
    // Nothing held for it: forget it, counted like any other eviction.
    bytes_ -= m->id.size();
    index_.erase(m->id);
    order_.erase(m);
    ++evictions_;
  }
}

void MachineHistory::append_matching(const Machine& m, const Filter& filter, uint64_t after,
                                     std::vector<HeldEvent>* out) const {
  for (const Item& item : m.items) {
    if (item.seq > after && filter.matches(item.type, &m.id)) {
      out->push_back(HeldEvent{item.seq, item.payload});
    }
  }
}

void MachineHistory::collect(const Filter& filter, uint64_t after,
                             std::vector<HeldEvent>* out) const {
  if (filter.machines.empty() || index_.empty()) return;
  const size_t first = out->size();
  if (all_exact(filter.machines)) {
    for (const auto& id : filter.machines) {  // deduplicated by the parsers
      if (auto it = index_.find(id); it != index_.end()) {
        append_matching(*it->second, filter, after, out);
      }
    }
  } else {
    for (const Machine& m : order_) {
      if (filter.shows_machine(m.id)) append_matching(m, filter, after, out);
    }
  }
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first), out->end(),
            [](const HeldEvent& a, const HeldEvent& b) { return a.seq < b.seq; });
}

}  // namespace smws
