// SPDX-License-Identifier: Apache-2.0
// relay::group_stream_options: --redis-sentinel, --redis-master,
// --redis-replicas and --redis-wait-timeout checked and turned into the
// stream's options.
#include <catch2/catch.hpp>

#include "smws/relay/redis_flags.h"

using smws::Status;
using smws::redis::StreamOptions;
using smws::relay::group_stream_options;
using smws::relay::RelayOptions;

TEST_CASE("Sentinels, their master's name and WAIT become the stream's options", "[relay][sentinel]") {
  RelayOptions o;
  o.redis_sentinels = {"10.0.0.31:26379", "sentinel.internal"};
  o.redis_master = "smws";
  o.redis_replicas = 1;
  o.redis_wait_timeout = 0.5;
  StreamOptions so;
  REQUIRE(group_stream_options(o, &so).ok());
  REQUIRE(so.sentinels.size() == 2);
  CHECK(so.sentinels[0].host == "10.0.0.31");
  CHECK(so.sentinels[1].port == 26379);
  CHECK(so.master_name == "smws");
  CHECK(so.replicas == 1);
  CHECK(so.wait_timeout == 0.5);
}

TEST_CASE("the group flags that do not go together are usage errors naming them", "[relay][sentinel]") {
  StreamOptions so;
  RelayOptions no_name;
  no_name.redis_sentinels = {"h:1"};
  Status s = group_stream_options(no_name, &so);
  CHECK(s.code == Status::kUsage);
  CHECK(s.message.rfind("--redis-sentinel needs --redis-master NAME", 0) == 0);
  RelayOptions no_sentinel;
  no_sentinel.redis_master = "smws";
  CHECK(group_stream_options(no_sentinel, &so).message == "--redis-master needs --redis-sentinel HOST:PORT");
  RelayOptions alone;
  alone.redis_replicas = 1;
  CHECK(group_stream_options(alone, &so).message == "--redis-replicas needs --redis or --redis-sentinel");
  RelayOptions zero;
  zero.redis = "redis://h";
  zero.redis_replicas = 1;
  zero.redis_wait_timeout = 0;
  CHECK(group_stream_options(zero, &so).message == "--redis-wait-timeout must be more than 0 with --redis-replicas");
  RelayOptions bad;
  bad.redis_sentinels = {"h:70000"};
  bad.redis_master = "m";
  CHECK(group_stream_options(bad, &so).message ==
        "--redis-sentinel 'h:70000': port must be 1-65535 (expected HOST[:PORT])");
}
