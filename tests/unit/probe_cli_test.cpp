// SPDX-License-Identifier: Apache-2.0
// ws-probe's flags added for issue 10, parsed through setup_ws_probe()
// without starting a process (the rest are in cli_setup_test.cpp).
#include <catch2/catch.hpp>

#include <vector>

#include "smws/cli.h"
#include "ws_probe.h"

namespace {

std::optional<int> parse_probe(ws_probe::ProbeOptions& o, std::vector<const char*> args) {
  CLI::App app{"unit test", "ws-probe"};
  ws_probe::setup_ws_probe(app, o);
  args.insert(args.begin(), "ws-probe");
  return smws::parse_flags(app, static_cast<int>(args.size()), args.data());
}

}  // namespace

TEST_CASE("ws-probe runs the confirming trial unless --no-confirm is given", "[cli][ws-probe][probe]") {
  ws_probe::ProbeOptions by_default;
  REQUIRE_FALSE(parse_probe(by_default, {"ws://127.0.0.1:9/ws"}));
  CHECK_FALSE(by_default.no_confirm);
  ws_probe::ProbeOptions skipped;
  REQUIRE_FALSE(parse_probe(skipped, {"--no-confirm", "--duration", "10", "ws://127.0.0.1:9/ws"}));
  CHECK(skipped.no_confirm);
  CHECK(skipped.duration == 10);
}
