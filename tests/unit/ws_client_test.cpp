// SPDX-License-Identifier: Apache-2.0
// smws/net/ws_client.h: the socket-free parts (URL parsing). The accept key
// the client checks is handshake.h's, tested in ws_server_handshake_test.cpp.
#include <catch2/catch.hpp>

#include "smws/net/ws_client.h"

using smws::net::parse_ws_url;

TEST_CASE("ws and wss URLs give host, port, TLS and target", "[ws_client]") {
  std::string error;
  auto u = parse_ws_url("ws://localhost:8002/api/v1/ws/queue?x=1#frag", &error);
  REQUIRE(u);
  CHECK_FALSE(u->tls);
  CHECK(u->host == "localhost");
  CHECK(u->port == 8002);
  CHECK(u->target == "/api/v1/ws/queue?x=1");

  u = parse_ws_url("wss://example.com", &error);
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->port == 443);
  CHECK(u->target == "/");

  u = parse_ws_url("WS://[::1]:3002?token=t", &error);
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->port == 3002);
  CHECK(u->target == "/?token=t");

  u = parse_ws_url("https://user:pw@host:8443/p", &error);
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->host == "host");
  CHECK(u->port == 8443);
}

TEST_CASE("URLs that are not ws:// or wss:// are refused with a reason", "[ws_client]") {
  std::string error;
  CHECK_FALSE(parse_ws_url("ftp://host/", &error));
  CHECK(error.find("not a ws:// or wss:// URL") != std::string::npos);
  CHECK_FALSE(parse_ws_url("localhost:3002", &error));
  CHECK_FALSE(parse_ws_url("ws://:80/", &error));
  CHECK_FALSE(parse_ws_url("ws://host:99999/", &error));
  CHECK(error.find("bad port") != std::string::npos);
  CHECK_FALSE(parse_ws_url("ws://host:12a/", &error));
  CHECK_FALSE(parse_ws_url("ws://[::1/", &error));
}
