// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include "smws/redis_url.h"

using smws::Status;
using smws::redis::parse_url;
using smws::redis::RedisUrl;

TEST_CASE("a redis URL gives host, port, user, password and database", "[redis]") {
  RedisUrl u;
  REQUIRE(parse_url("redis://redis.internal", &u).ok());
  CHECK(u.host == "redis.internal");
  CHECK(u.port == 6379);
  CHECK(u.db == 0);
  CHECK_FALSE(u.has_auth());

  REQUIRE(parse_url("redis://:s3cret@10.0.0.5:6380/2", &u).ok());
  CHECK(u.host == "10.0.0.5");
  CHECK(u.port == 6380);
  CHECK(u.user.empty());
  CHECK(u.password == "s3cret");
  CHECK(u.db == 2);

  REQUIRE(parse_url("redis://relay:p%40ss%3Aword@[::1]:7000", &u).ok());
  CHECK(u.host == "::1");
  CHECK(u.port == 7000);
  CHECK(u.user == "relay");
  CHECK(u.password == "p@ss:word");
  CHECK(u.display() == "[::1]:7000/0");

  REQUIRE(parse_url("redis://pw@host", &u).ok());
  CHECK(u.password == "pw");
  CHECK(u.display() == "host:6379/0");
}

TEST_CASE("a malformed redis URL is a usage error naming the URL and the problem", "[redis]") {
  struct Case {
    const char* url;
    const char* problem;
  } cases[] = {
      {"http://host:6379", "must start with redis://"},
      {"rediss://host", "TLS"},
      {"redis://", "no host"},
      {"redis://host:", "empty port"},
      {"redis://host:0", "port must be 1-65535"},
      {"redis://host:65536", "port must be 1-65535"},
      {"redis://host:63x9", "port must be 1-65535"},
      {"redis://host/x", "database"},
      {"redis://user:@host", "empty password"},
      {"redis://:p%zz@host", "%-escape"},
      {"redis://[::1", "unclosed"},
      {"redis://ho st", "invalid character"},
  };
  for (const Case& c : cases) {
    INFO(c.url);
    RedisUrl u;
    Status s = parse_url(c.url, &u);
    CHECK(s.code == Status::kUsage);
    CHECK(s.message.find(std::string("'") + c.url + "'") != std::string::npos);
    CHECK(s.message.find(c.problem) != std::string::npos);
  }
}

TEST_CASE("a --redis-sentinel value is a host and an optional port, 26379 by default", "[redis][sentinel]") {
  smws::redis::HostPort s;
  REQUIRE(smws::redis::parse_sentinel("10.0.0.1:26380", &s).ok());
  CHECK(s.host == "10.0.0.1");
  CHECK(s.port == 26380);
  REQUIRE(smws::redis::parse_sentinel("sentinel.internal", &s).ok());
  CHECK(s.host == "sentinel.internal");
  CHECK(s.port == 26379);
  REQUIRE(smws::redis::parse_sentinel("[::1]:5000", &s).ok());
  CHECK(s.host == "::1");
  CHECK(s.port == 5000);
  CHECK(s.display() == "[::1]:5000");
  smws::Status bad = smws::redis::parse_sentinel("h:0", &s);
  CHECK(bad.code == smws::Status::kUsage);
  CHECK(bad.message == "--redis-sentinel 'h:0': port must be 1-65535 (expected HOST[:PORT])");
  CHECK(smws::redis::parse_sentinel("redis://h:1", &s).message ==
        "--redis-sentinel 'redis://h:1': a Sentinel is HOST:PORT, not a URL (expected HOST[:PORT])");
  CHECK_FALSE(smws::redis::parse_sentinel("", &s).ok());
}
