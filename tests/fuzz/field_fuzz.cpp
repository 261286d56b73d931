// SPDX-License-Identifier: Apache-2.0
// sm-send's argument grammar: TYPE, -m/--state/--previous and FIELD
// arguments (NUL-separated in the input) through parse_field() and build().
// Whatever they accept must be one compact JSON object that scan() accepts,
// whose "type" is TYPE (or an @type field's), with every key=value field's key in "data"; whatever
// they refuse must say why. Nothing may throw.
// Control byte: bit 0..2 use the next arguments as machine, state, previous.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "smws/event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const uint8_t flags = input.byte();
  std::vector<std::string> args;
  std::string_view rest = input.rest();
  for (;;) {
    size_t nul = rest.find('\0');
    args.emplace_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  smws::event::BuildSpec spec;
  size_t next = 0;
  spec.type = args[next++];
  if ((flags & 1) && next < args.size()) spec.machine_id = args[next++];
  if ((flags & 2) && next < args.size()) spec.state = args[next++];
  if ((flags & 4) && next < args.size()) spec.previous_state = args[next++];
  std::vector<smws::event::Field> data_fields;
  for (; next < args.size(); ++next) {
    spec.fields.push_back(args[next]);
    smws::event::Field f;
    std::string error;
    if (smws::event::parse_field(args[next], &f, &error)) {
      FUZZ_CHECK(!f.key.empty());
      if (!f.top_level) data_fields.push_back(f);
    } else {
      FUZZ_CHECK(!error.empty());
    }
  }

  std::string out, error;
  if (!smws::event::build(spec, &out, &error)) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  smws::event::Scan scan;
  FUZZ_CHECK(smws::event::scan(out, &scan));
  auto dom = nlohmann::ordered_json::parse(out);
  FUZZ_CHECK(dom.is_object() && dom.begin().key() == "type");
  // TYPE, unless an @type field replaced it (later fields win).
  FUZZ_CHECK(dom["type"].is_string() && scan.type == dom["type"].get<std::string>());
  FUZZ_CHECK(dom.dump() == out);
  if (spec.machine_id) FUZZ_CHECK(dom.contains("machine_id"));
  for (const auto& f : data_fields) FUZZ_CHECK(dom["data"].contains(f.key));
  return 0;
}
