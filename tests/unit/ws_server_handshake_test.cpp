// SPDX-License-Identifier: Apache-2.0
// The HTTP side of ws-relay's server: request parsing, RFC 6455 upgrade
// checks, Origin and token policy, response bytes.
#include <catch2/catch.hpp>

#include "smws/net/handshake.h"

using namespace smws::net;

namespace {

HttpRequest parse(const std::string& head) {
  std::string error;
  auto r = parse_request_head(head, &error);
  INFO(error);
  REQUIRE(r);
  return *r;
}

const char* kUpgrade =
    "GET /ws/events?since=5&token=s%20ecret HTTP/1.1\r\n"
    "Host: 127.0.0.1:3002\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

}  // namespace

TEST_CASE("accept key is the RFC 6455 example's", "[handshake]") {
  CHECK(websocket_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("a request head ends at the blank line, not before", "[handshake]") {
  std::string head = kUpgrade;
  CHECK(find_head_end(head.substr(0, head.size() - 1)) == std::string_view::npos);
  CHECK(find_head_end(head + "\x81\x80") == head.size());
}

TEST_CASE("a valid upgrade request passes every check", "[handshake]") {
  HttpRequest r = parse(kUpgrade);
  CHECK(r.method == "GET");
  CHECK(r.path == "/ws/events");
  REQUIRE(r.query_param("since"));
  CHECK(*r.query_param("since") == "5");
  CHECK(*r.query_param("token") == "s ecret");
  CHECK(is_upgrade_request(r));
  CHECK_FALSE(check_upgrade(r));
  std::string response = switching_protocols_response(*r.header("sec-websocket-key"));
  CHECK(response.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
  CHECK(response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);
}

TEST_CASE("an upgrade without a key is refused with 400", "[handshake]") {
  HttpRequest r = parse(
      "GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n");
  auto refusal = check_upgrade(r);
  REQUIRE(refusal);
  CHECK(refusal->status == 400);
  CHECK(refusal->body.find("Sec-WebSocket-Key") != std::string::npos);
}

TEST_CASE("a key that is not base64 of 16 bytes is refused with 400", "[handshake]") {
  HttpRequest r = parse(
      "GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short==\r\n\r\n");
  auto refusal = check_upgrade(r);
  REQUIRE(refusal);
  CHECK(refusal->status == 400);
}

TEST_CASE("a WebSocket version other than 13 gets 426 naming 13", "[handshake]") {
  HttpRequest r = parse(
      "GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  auto refusal = check_upgrade(r);
  REQUIRE(refusal);
  CHECK(refusal->status == 426);
  CHECK(serialize_reply(*refusal, false).find("Sec-WebSocket-Version: 13\r\n") != std::string::npos);
}

TEST_CASE("a POST upgrade is refused with 405", "[handshake]") {
  std::string head = kUpgrade;
  head.replace(0, 3, "POST");
  auto refusal = check_upgrade(parse(head));
  REQUIRE(refusal);
  CHECK(refusal->status == 405);
}

TEST_CASE("garbage is not an HTTP request", "[handshake]") {
  std::string error;
  CHECK_FALSE(parse_request_head("\x16\x03\x01\x02\x00\x01\r\n\r\n", &error));
  CHECK_FALSE(error.empty());
  CHECK_FALSE(parse_request_head("GET http://x/ HTTP/1.1\r\n\r\n", &error));
}

TEST_CASE("no Origin header is allowed, and by default only the same host", "[handshake][origin]") {
  HttpRequest r = parse(kUpgrade);
  CHECK(origin_allowed(r, {}));
  r.headers["origin"] = "http://127.0.0.1:3002";
  CHECK(origin_allowed(r, {}));
  r.headers["origin"] = "https://evil.example";
  CHECK_FALSE(origin_allowed(r, {}));
  r.headers["origin"] = "http://127.0.0.1:3003";
  CHECK_FALSE(origin_allowed(r, {}));
}

TEST_CASE("allowed origins match exactly, ignoring case and a trailing slash", "[handshake][origin]") {
  HttpRequest r = parse(kUpgrade);
  r.headers["origin"] = "https://Dash.Example.com";
  CHECK(origin_allowed(r, {"https://dash.example.com/"}));
  CHECK_FALSE(origin_allowed(r, {"http://dash.example.com"}));
  CHECK_FALSE(origin_allowed(r, {"https://dash.example.com.evil"}));
  CHECK(origin_allowed(r, {"*"}));
}

TEST_CASE("a token is taken from a Bearer header or the token query parameter only", "[handshake][token]") {
  HttpRequest r = parse(kUpgrade);
  CHECK(token_ok(r, ""));
  CHECK(token_ok(r, "s ecret"));  // from the query
  CHECK_FALSE(token_ok(r, "s ecre"));
  r.query.clear();
  CHECK_FALSE(token_ok(r, "s ecret"));
  r.headers["authorization"] = "Bearer s ecret";
  CHECK(token_ok(r, "s ecret"));
  r.headers["authorization"] = "Basic s ecret";
  CHECK_FALSE(token_ok(r, "s ecret"));
}

TEST_CASE("a reply carries its length and closes the connection", "[handshake]") {
  HttpReply reply = text_reply(404, "not found: /x");
  std::string bytes = serialize_reply(reply, false);
  CHECK(bytes.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  CHECK(bytes.find("Content-Length: 14\r\n") != std::string::npos);
  CHECK(bytes.find("Connection: close\r\n") != std::string::npos);
  CHECK(bytes.substr(bytes.size() - 14) == "not found: /x\n");
  std::string head_only = serialize_reply(reply, true);
  CHECK(head_only.substr(head_only.size() - 4) == "\r\n\r\n");
}
