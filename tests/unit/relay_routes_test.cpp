// SPDX-License-Identifier: Apache-2.0
// relay::parse_routes: --route values checked against each other and the
// paths ws-relay serves itself.
#include <catch2/catch.hpp>

#include "smws/relay/routes.h"

using smws::Route;
using smws::Status;
using smws::relay::parse_routes;

TEST_CASE("routes parse in order with their filters", "[relay]") {
  std::vector<Route> routes;
  Status s = parse_routes({"/api/v1/ws/queue=type:queue_update", "/wf=type:workflow_*;machine:w-*"},
                          "/ws/events", &routes);
  REQUIRE(s.ok());
  REQUIRE(routes.size() == 2);
  CHECK(routes[0].path == "/api/v1/ws/queue");
  CHECK(routes[1].path == "/wf");
}

TEST_CASE("a route over a path the relay serves is a usage error naming it", "[relay]") {
  for (const char* path : {"/ws/events", "/", "/healthz", "/metrics"}) {
    std::vector<Route> routes;
    Status s = parse_routes({std::string(path) + "=type:x"}, "/ws/events", &routes);
    CHECK(s.code == Status::kUsage);
    CHECK(s.message == "--route '" + std::string(path) + "=type:x': " + path + " is already served by ws-relay");
  }
}

TEST_CASE("a path routed twice is a usage error", "[relay]") {
  std::vector<Route> routes;
  Status s = parse_routes({"/a=type:x", "/a=type:y"}, "/ws/events", &routes);
  CHECK(s.code == Status::kUsage);
  CHECK(s.message == "--route '/a=type:y': /a is routed twice");
}

TEST_CASE("a route that does not parse keeps the parser's message", "[relay]") {
  std::vector<Route> routes;
  Status s = parse_routes({"no-equals-sign"}, "/ws/events", &routes);
  CHECK_FALSE(s.ok());
  CHECK_THAT(s.message, Catch::Contains("no-equals-sign"));
}
