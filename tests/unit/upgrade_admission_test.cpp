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
  // Same host, no token, no room: 401 with a Bearer challenge.
  a = admit_upgrade(upgrade("Origin: http://127.0.0.1:3002\r\n"), rules, 1, false);
  CHECK(a.reply.status == 401);
  CHECK(header(a.reply, "WWW-Authenticate") == "Bearer");
  // The token, but no room: 503 with Retry-After.
  a = admit_upgrade(upgrade("Authorization: Bearer s3cret\r\n"), rules, 1, false);
  CHECK(a.reply.status == 503);
  CHECK(a.reply.body == "too many clients\n");
  CHECK(header(a.reply, "Retry-After") == "5");
}

TEST_CASE("while shutting down every upgrade gets 503", "[admission]") {
  AdmissionRules rules;
  rules.max_clients = 10;
  Admission a = admit_upgrade(upgrade(), rules, 0, true);
  CHECK(a.reply.status == 503);
  CHECK(a.reply.body == "shutting down\n");
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
