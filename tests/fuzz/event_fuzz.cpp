// SPDX-License-Identifier: Apache-2.0
// Differential: event::scan (the allocation-free fast path) against
// event::scan_reference (nlohmann's SAX parser) on the same bytes. They must
// agree on validity, type, the timestamp/reply_to flags and the error text;
// when the fast path settles an event, the raw members it hands ws-relay
// must be the values a DOM holds; an accepted event must survive
// append_single_line unchanged as JSON; excerpt() must give valid UTF-8.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "smws/event.h"
#include "smws/utf8.h"

namespace {

using Json = nlohmann::json;

// A raw member from Members against the DOM's value for that key.
void check_member(const Json& dom, const char* key, std::string_view raw) {
  auto it = dom.find(key);
  if (it == dom.end()) {
    FUZZ_CHECK(raw.empty());
    return;
  }
  FUZZ_CHECK(!raw.empty());
  Json parsed = Json::parse(raw.begin(), raw.end(), nullptr, false);
  FUZZ_CHECK(!parsed.is_discarded());
  FUZZ_CHECK(parsed == *it);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  smws::event::Scan fast, ref;
  smws::event::Members members;
  const bool ok = smws::event::scan(bytes, &fast, &members);
  const bool ref_ok = smws::event::scan_reference(bytes, &ref);
  FUZZ_CHECK(ok == fast.valid);
  FUZZ_CHECK(ok == ref_ok);
  if (!ok) {
    FUZZ_CHECK(fast.error == ref.error);
    FUZZ_CHECK(!fast.error.empty());
  } else {
    FUZZ_CHECK(fast.type == ref.type);
    FUZZ_CHECK(!fast.type.empty());
    FUZZ_CHECK(fast.has_timestamp == ref.has_timestamp);
    FUZZ_CHECK(fast.has_reply_to == ref.has_reply_to);

    // nlohmann keeps the last of duplicate keys, as Members does.
    Json dom = Json::parse(bytes.begin(), bytes.end(), nullptr, false);
    FUZZ_CHECK(dom.is_object());
    FUZZ_CHECK(dom["type"] == fast.type);
    if (members.settled) {
      check_member(dom, "machine_id", members.machine_id);
      check_member(dom, "state", members.state);
      check_member(dom, "previous_state", members.previous_state);
      check_member(dom, "timestamp", members.timestamp);
      check_member(dom, "data", members.data);
      FUZZ_CHECK(members.has_seq == dom.contains("seq"));
    }

    std::string line;
    smws::event::append_single_line(&line, bytes);
    FUZZ_CHECK(line.find_first_of("\r\n") == std::string::npos);
    Json again = Json::parse(line, nullptr, false);
    FUZZ_CHECK(!again.is_discarded());
    FUZZ_CHECK(again == dom);
  }
  FUZZ_CHECK(smws::is_valid_utf8(smws::event::excerpt(bytes)));
  return 0;
}
