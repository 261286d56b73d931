// SPDX-License-Identifier: Apache-2.0
// parse_listen: ws-relay's --listen HOST:PORT.
#include <catch2/catch.hpp>

#include "smws/listen_address.h"

using smws::ListenAddress;
using smws::parse_listen;
using smws::Status;

TEST_CASE("HOST:PORT, a bracketed IPv6 HOST:PORT and :PORT are listen addresses", "[listen_address]") {
  ListenAddress a;
  REQUIRE(parse_listen("127.0.0.1:3002", &a).ok());
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 3002);
  REQUIRE(parse_listen("[::1]:0", &a).ok());
  CHECK(a.host == "::1");
  CHECK(a.port == 0);
  REQUIRE(parse_listen(":8080", &a).ok());
  CHECK(a.host == "0.0.0.0");
  CHECK(a.port == 8080);
  REQUIRE(parse_listen("localhost:65535", &a).ok());
  CHECK(a.host == "localhost");
  CHECK(a.port == 65535);
}

TEST_CASE("a listen address without a valid port is a usage error naming the form",
          "[listen_address]") {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "host:65536", "host:99999999", "host:8o",
                          "host:-1", "host: 80", ""}) {
    INFO(bad);
    ListenAddress a{"untouched", 7};
    Status st = parse_listen(bad, &a);
    CHECK(st.code == Status::kUsage);
    CHECK(st.message == "expected HOST:PORT, e.g. 127.0.0.1:3002");
    CHECK(a.host == "untouched");
    CHECK(a.port == 7);
  }
}
