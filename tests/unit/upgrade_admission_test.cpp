// SPDX-License-Identifier: Apache-2.0
// admit_upgrade and HttpRoutes: what the server answers before a socket is
// a WebSocket, with parsed requests and no sockets.
#include <catch2/catch.hpp>

#include <string>

#include "smws/net/http_routes.h"
#include "smws/net/upgrade_admission.h"

using namespace smws::net;

namespace {

HttpRequest parse(const std::string& head) {
  std::string error;
  auto r = parse_request_head(head, &error);
  REQUIRE(r);
  return *r;
}

const char* kUpgrade =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:3002\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

HttpRequest upgrade(const std::string& extra = "") { return parse(kUpgrade + extra + "\r\n"); }

std::string header(const HttpReply& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

}  // namespace

TEST_CASE("a valid upgrade with room is accepted", "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 10;
  CHECK(admit_upgrade(upgrade(), rules, 9, false).verdict == Admission::Verdict::kAccept);
}

TEST_CASE("a plain GET on the WebSocket path gets 426, not counted as a refusal",
          "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 10;
  Admission a = admit_upgrade(parse("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), rules, 0, false);
  CHECK(a.verdict == Admission::Verdict::kNotUpgrade);
  CHECK(a.reply.status == 426);
  CHECK(header(a.reply, "Upgrade") == "websocket");
}

TEST_CASE("origin, then token, then room: the first failing check answers", "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 1;
  rules.token = "s3cret";
  // A foreign origin without a token and no room: the origin is named.
  Admission a = admit_upgrade(upgrade("Origin: http://evil.example\r\n"), rules, 1, false);
  CHECK(a.verdict == Admission::Verdict::kRefuse);
  CHECK(a.reply.status == 403);
  CHECK(a.reason == RefusalReason::kOrigin);
  // Same host, no token, no room: 401 with a Bearer challenge.
  a = admit_upgrade(upgrade("Origin: http://127.0.0.1:3002\r\n"), rules, 1, false);
  CHECK(a.reply.status == 401);
  CHECK(a.reason == RefusalReason::kToken);
  CHECK_FALSE(a.token_sent);
  CHECK(header(a.reply, "WWW-Authenticate") == "Bearer");
  a = admit_upgrade(upgrade("Authorization: Bearer wrong\r\n"), rules, 1, false);
  CHECK(a.reason == RefusalReason::kToken);
  CHECK(a.token_sent);
  // The token, but no room: 503 with Retry-After.
  a = admit_upgrade(upgrade("Authorization: Bearer s3cret\r\n"), rules, 1, false);
  CHECK(a.reply.status == 503);
  CHECK(a.reason == RefusalReason::kMaxClients);
  CHECK(std::string(refusal_reason_name(a.reason)) == "max_clients");
  CHECK(a.reply.body == "too many clients\n");
  CHECK(header(a.reply, "Retry-After") == "5");
}

TEST_CASE("while shutting down every upgrade gets 503", "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 10;
  Admission a = admit_upgrade(upgrade(), rules, 0, true);
  CHECK(a.reply.status == 503);
  CHECK(a.reply.body == "shutting down\n");
  CHECK(a.reason == RefusalReason::kShuttingDown);
}

TEST_CASE("a malformed upgrade is refused as bad_upgrade", "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 10;
  Admission a = admit_upgrade(
      parse("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"),
      rules, 0, false);
  CHECK(a.verdict == Admission::Verdict::kRefuse);
  CHECK(a.reply.status == 400);
  CHECK(std::string(refusal_reason_name(a.reason)) == "bad_upgrade");
}

TEST_CASE("refusals are logged once per address per interval, with the count since",
          "[admission]") {
  RefusalLog log(10.0, 4);
  uint64_t since = 99;
  CHECK(log.should_log("10.0.0.1", 100.0, &since));
  CHECK(since == 0);
  // A burst from the same address within the interval: not logged.
  for (int i = 0; i < 49; ++i) CHECK_FALSE(log.should_log("10.0.0.1", 100.0 + i * 0.1, &since));
  // Another address has its own first line.
  CHECK(log.should_log("10.0.0.2", 101.0, &since));
  // After the interval, one line that counts the 49 not logged.
  CHECK(log.should_log("10.0.0.1", 110.0, &since));
  CHECK(since == 49);
  CHECK_FALSE(log.should_log("10.0.0.1", 110.5, &since));
}

TEST_CASE("refusals not logged are told once their interval has passed", "[admission]") {
  RefusalLog log(10.0, 16);
  uint64_t since = 0;
  CHECK(log.should_log("10.0.0.1", 0.0, &since));
  CHECK(log.should_log("10.0.0.2", 0.0, &since));
  for (int i = 0; i < 7; ++i) CHECK_FALSE(log.should_log("10.0.0.1", 1.0, &since));
  CHECK(log.take_due(5.0).empty());  // still within the interval
  auto due = log.take_due(10.0);
  REQUIRE(due.size() == 1);  // 10.0.0.2 had nothing more
  CHECK(due[0].address == "10.0.0.1");
  CHECK(due[0].refused == 7);
  CHECK(log.take_due(11.0).empty());  // told once
  // The summary started a new interval: a refusal right after is not logged.
  CHECK_FALSE(log.should_log("10.0.0.1", 12.0, &since));
}

TEST_CASE("the refusal log forgets addresses past its bound", "[admission]") {
  RefusalLog log(10.0, 2);
  uint64_t since = 0;
  CHECK(log.should_log("a", 0.0, &since));
  CHECK(log.should_log("b", 0.0, &since));
  // Full, nobody quiet for an interval: cleared, so "a" logs again at once.
  CHECK(log.should_log("c", 1.0, &since));
  CHECK(log.should_log("a", 1.0, &since));
}

TEST_CASE("refusals not logged from addresses the log forgets are still told", "[admission]") {
  RefusalLog log(10.0, 2);
  uint64_t since = 0;
  CHECK(log.should_log("a", 0.0, &since));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(log.should_log("a", 0.5, &since));
  CHECK(log.should_log("b", 1.0, &since));
  CHECK(log.should_log("c", 2.0, &since));  // full: "a" and "b" are forgotten
  CHECK(log.take_due(5.0).empty());          // once per interval, from the forgetting
  auto due = log.take_due(12.0);
  REQUIRE(due.size() == 1);
  CHECK(due[0].address.empty());
  CHECK(due[0].refused == 5);
  CHECK(due[0].addresses == 1);  // "b" had nothing untold
  CHECK(log.take_due(30.0).empty());  // told once
}

TEST_CASE("a peer's address is its host part", "[admission]") {
  CHECK(address_of_peer("127.0.0.1:5000") == "127.0.0.1");
  CHECK(address_of_peer("[::1]:5000") == "::1");
}

TEST_CASE("routes answer GET and HEAD on known paths, 404 and 405 otherwise", "[routes]") {
  HttpRoutes routes;
  routes.add("/healthz", [](const HttpRequest&) { return text_reply(200, "ok"); });
  CHECK(routes.serve(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), "").body == "ok\n");
  CHECK(routes.serve(parse("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), "").status == 200);
  HttpReply missing = routes.serve(parse("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), "");
  CHECK(missing.status == 404);
  CHECK(missing.body == "not found: /nope\n");
  // 405 comes first, for any path.
  HttpReply post = routes.serve(parse("POST /nope HTTP/1.1\r\nHost: x\r\n\r\n"), "");
  CHECK(post.status == 405);
  CHECK(header(post, "Allow") == "GET, HEAD");
}

TEST_CASE("a token route needs the token when one is set, a public one never does",
          "[routes]") {
  HttpRoutes routes;
  routes.add("/metrics", [](const HttpRequest&) { return text_reply(200, "m"); },
             RouteAccess::kToken);
  routes.add("/healthz", [](const HttpRequest&) { return text_reply(200, "h"); });
  HttpRequest bare = parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(routes.serve(bare, "").status == 200);  // no token configured
  HttpReply refused = routes.serve(bare, "t");
  CHECK(refused.status == 401);
  CHECK(header(refused, "WWW-Authenticate") == "Bearer");
  CHECK(routes.serve(parse("GET /metrics?token=t HTTP/1.1\r\nHost: x\r\n\r\n"), "t").status == 200);
  CHECK(routes.serve(parse("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), "t").status == 200);
}

TEST_CASE("a handler sees the parsed query", "[routes]") {
  HttpRoutes routes;
  routes.add("/echo", [](const HttpRequest& r) {
    const std::string* q = r.query_param("q");
    return text_reply(200, q ? *q : "-");
  });
  CHECK(routes.serve(parse("GET /echo?q=a%20b HTTP/1.1\r\nHost: x\r\n\r\n"), "").body == "a b\n");
}
