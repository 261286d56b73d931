// SPDX-License-Identifier: Apache-2.0
// ws-relay's subscription filters, all three ways a peer or a user sets one:
// a {"type":"subscribe",...} message (apply_subscribe), the query string of
// an upgrade (filter_from_query) and --route PATH=FILTER (parse_route).
// Checks: nothing throws; a refusal leaves the filter as it was and its error
// message is one JSON object; an accepted filter describes itself as JSON and
// its globs match what they must: each glob matches itself with its '*'
// removed, '*' matches anything. Globs are matched against the input too,
// so a pattern that backtracks badly shows up as a slow unit.
// Control byte: 0 subscribe message, 1 query string, 2 route; the rest of
// the input is the message, the query ("k=v&k=v") or the spec.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "smws/subscription.h"

namespace {

using smws::Filter;

void check_filter(const Filter& f, std::string_view text) {
  FUZZ_CHECK(nlohmann::json::accept(f.describe()));
  for (const auto* list : {&f.types, &f.machines}) {
    for (const auto& glob : *list) {
      FUZZ_CHECK(!glob.empty());
      std::string literal;
      for (char c : glob) {
        if (c != '*') literal += c;
      }
      FUZZ_CHECK(smws::glob_match(glob, literal));
      (void)smws::glob_match(glob, text);
    }
  }
  FUZZ_CHECK(smws::glob_match("*", text));
  std::string machine(text);
  (void)f.matches(text, &machine);
  (void)f.matches(text, nullptr);
}

void check_refusal(const smws::Status& st, const Filter& before, const Filter& after) {
  FUZZ_CHECK(!st.message.empty());
  FUZZ_CHECK(after == before);
  auto reply = nlohmann::json::parse(smws::filter_error_message(st), nullptr, false);
  FUZZ_CHECK(reply.is_object() && reply["type"] == "error");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const uint8_t mode = input.byte() % 3;
  const std::string_view text = input.rest();
  Filter base;
  base.types = {"state_*"};
  if (mode == 0) {
    auto message = nlohmann::json::parse(text, nullptr, false);
    if (!message.is_object()) return 0;
    message["type"] = "subscribe";
    Filter f = base;
    auto st = smws::apply_subscribe(message, &f);
    if (st.ok()) {
      check_filter(f, text);
    } else {
      check_refusal(st, base, f);
    }
  } else if (mode == 1) {
    std::vector<std::pair<std::string, std::string>> query;
    std::string_view rest = text;
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      size_t eq = pair.find('=');
      query.emplace_back(std::string(pair.substr(0, eq)),
                         eq == std::string_view::npos ? std::string() : std::string(pair.substr(eq + 1)));
      rest.remove_prefix(amp == std::string_view::npos ? rest.size() : amp + 1);
    }
    Filter f;
    auto st = smws::filter_from_query(query, base, &f);
    if (st.ok()) {
      check_filter(f, text);
    } else {
      check_refusal(st, base, f);
    }
  } else {
    smws::Route route;
    auto st = smws::parse_route(text, &route);
    if (st.ok()) {
      FUZZ_CHECK(!route.path.empty() && route.path[0] == '/');
      FUZZ_CHECK(route.path.find('?') == std::string::npos);
      check_filter(route.filter, text);
    } else {
      FUZZ_CHECK(!st.message.empty());
    }
  }
  return 0;
}
