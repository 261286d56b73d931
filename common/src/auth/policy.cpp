// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/policy.h"

#include "smws/auth/file_text.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "smws/auth/users_file.h"

namespace smws::auth {
namespace {

using json = nlohmann::json;

// "" when value is a valid GROUP or @NAME, else why not.
std::string approver_error(std::string_view value) {
  if (value.size() > 1 && value[0] == '@') {
    // A person: the users file's name rule, less its "no leading @".
    std::string_view name = value.substr(1);
    if (auto st = validate_user_name(name); !st.ok()) return st.message;
    return "";
  }
  std::vector<std::string> one;
  if (value.empty() || value == "-" || value.find(',') != std::string_view::npos) {
    return "approver \"" + std::string(value.substr(0, 64)) + "\" must be one GROUP or @NAME";
  }
  if (auto st = parse_group_list(value, &one); !st.ok()) return st.message;
  return "";
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

std::string rule_error(const json& j, PolicyRule* rule) {
  if (!j.is_object()) return "not a JSON object";
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key != "action" && key != "approvers" && key != "required" && key != "self_approval") {
      return "unknown key \"" + key.substr(0, 40) + "\" (action, approvers, required, self_approval)";
    }
  }
  auto action = j.find("action");
  if (action == j.end() || !action->is_string() || action->get<std::string>().empty()) {
    return "\"action\" must be a non-empty string (a glob: deploy*)";
  }
  rule->action = action->get<std::string>();
  if (auto a = j.find("approvers"); a != j.end()) {
    if (!a->is_array() || a->empty()) return "\"approvers\" must be a non-empty list of GROUP or @NAME";
    for (const auto& v : *a) {
      if (!v.is_string()) return "\"approvers\" must be a non-empty list of GROUP or @NAME";
      std::string why = approver_error(v.get<std::string>());
      if (!why.empty()) return why;
      if (std::find(rule->approvers.begin(), rule->approvers.end(), v) == rule->approvers.end()) {
        rule->approvers.push_back(v.get<std::string>());
      }
    }
  }
  if (auto r = j.find("required"); r != j.end()) {
    if (!r->is_number_integer() || r->get<long long>() < 1 || r->get<long long>() > kMaxRequired) {
      return "\"required\" must be an integer from 1 to " + std::to_string(kMaxRequired);
    }
    rule->required = static_cast<int>(r->get<long long>());
  }
  if (auto s = j.find("self_approval"); s != j.end()) {
    if (!s->is_boolean()) return "\"self_approval\" must be true or false";
    rule->self_approval = s->get<bool>();
  }
  return "";
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative matcher with one backtrack point (the last '*'): linear in
  // practice, never exponential.
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Policy::Policy() : approvers_{"approvers"} {}

Status Policy::set_approvers(const std::vector<std::string>& values) {
  if (values.empty()) return Status::Ok();
  std::vector<std::string> out;
  for (const auto& v : values) {
    std::string why = approver_error(v);
    if (!why.empty()) return Status::Error(Status::kUsage, "--approvers " + v.substr(0, 64) + ": " + why);
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  approvers_ = std::move(out);
  return Status::Ok();
}

Status Policy::parse_rules(std::string_view text, const std::string& source, std::vector<PolicyRule>* out) {
  std::vector<PolicyRule> rules;
  std::string errors;
  std::size_t bad = 0, number = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    const std::size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    PolicyRule rule;
    rule.source = source + ":" + std::to_string(number);
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    std::string why = j.is_discarded() ? "not JSON" : rule_error(j, &rule);
    if (why.empty() && rules.size() >= kMaxPolicyRules) why = "more than " + std::to_string(kMaxPolicyRules) + " rules";
    if (!why.empty()) {
      if (++bad <= 20) errors += (errors.empty() ? "" : "\n") + rule.source + ": " + why;
      continue;
    }
    rules.push_back(std::move(rule));
  }
  if (bad > 0) {
    if (bad > 20) errors += "\n" + source + ": ... and " + std::to_string(bad - 20) + " more bad lines";
    return Status::Error(Status::kBadInput, errors);
  }
  *out = std::move(rules);
  return Status::Ok();
}

Status Policy::load_rules(const std::string& path, std::vector<PolicyRule>* out) {
  std::string text;
  if (Status s = read_file_text(path, "--policy", &text); !s.ok()) return s;
  return parse_rules(text, path, out);
}

EffectivePolicy Policy::effective(const std::vector<std::string>& actions) const {
  EffectivePolicy e;
  e.actions = actions;
  if (actions.empty()) {
    e.approvers.push_back(approvers_);
    return e;
  }
  for (const auto& action : actions) {
    const PolicyRule* match = nullptr;
    for (const auto& r : rules_) {
      if (glob_match(r.action, action)) {
        match = &r;
        break;
      }
    }
    if (match == nullptr) {
      e.approvers.push_back(approvers_);
      continue;
    }
    e.approvers.push_back(match->approvers.empty() ? approvers_ : match->approvers);
    e.required = std::max(e.required, match->required);
    e.self_approval = e.self_approval && match->self_approval;
  }
  return e;
}

bool Policy::admits(const std::vector<std::string>& approvers, const Identity& who) {
  for (const auto& a : approvers) {
    if (!a.empty() && a[0] == '@') {
      if (std::string_view(a).substr(1) == who.name) return true;
    } else if (who.in_group(a)) {
      return true;
    }
  }
  return false;
}

DecideCheck Policy::may_decide(const Identity& who, const std::vector<std::string>& actions,
                               std::string_view requester, std::string_view decision_type) const {
  DecideCheck c;
  if (!roles_enabled_) {
    c.allowed = true;
    return c;
  }
  const EffectivePolicy e = effective(actions);
  const std::string what = actions.empty() ? std::string("this interrupt") : join(actions);
  for (std::size_t i = 0; i < e.approvers.size(); ++i) {
    const std::string action = actions.empty() ? std::string("this interrupt") : actions[i];
    if (!who.verified() || !admits(e.approvers[i], who)) {
      c.error = "not allowed: " + who.name + " may not decide " + action + " (approvers: " + join(e.approvers[i]) +
                (who.verified() ? ")" : "; " + who.name + " is not a verified identity)");
      return c;
    }
  }
  const bool approving = decision_type == "approve" || decision_type == "edit";
  if (approving && !e.self_approval && !requester.empty() && requester == who.name) {
    c.error = "not allowed: " + who.name + " may not " + std::string(decision_type) + " " + what +
              ": they asked for it (self_approval is false)";
    return c;
  }
  c.allowed = true;
  return c;
}

json Policy::policy_json(const std::vector<std::string>& actions) const {
  const EffectivePolicy e = effective(actions);
  json j = {{"approvers", e.approvers.front()}, {"required", e.required}};
  if (!e.self_approval) j["self_approval"] = false;
  const bool differ = std::any_of(e.approvers.begin(), e.approvers.end(),
                                  [&](const auto& a) { return a != e.approvers.front(); });
  if (differ) j["all_of"] = e.approvers;
  return j;
}

std::vector<std::string> action_names(const json& interrupt) {
  std::vector<std::string> out;
  if (!interrupt.is_object()) return out;
  auto requests = interrupt.find("action_requests");
  if (requests == interrupt.end() || !requests->is_array()) return out;
  for (const auto& r : *requests) {
    if (!r.is_object()) continue;
    auto name = r.find("name");
    if (name != r.end() && name->is_string()) out.push_back(name->get<std::string>());
  }
  return out;
}

}  // namespace smws::auth
