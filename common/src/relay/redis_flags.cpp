// SPDX-License-Identifier: Apache-2.0
#include "smws/relay/redis_flags.h"

namespace smws::relay {

Status group_stream_options(const RelayOptions& o, redis::StreamOptions* out) {
  auto usage = [](std::string message) { return Status::Error(Status::kUsage, std::move(message)); };
  if (!o.redis_sentinels.empty() && o.redis_master.empty()) {
    return usage("--redis-sentinel needs --redis-master NAME (the name of 'sentinel monitor NAME ...' in the "
                 "Sentinels' configuration)");
  }
  if (o.redis_sentinels.empty() && !o.redis_master.empty()) {
    return usage("--redis-master needs --redis-sentinel HOST:PORT");
  }
  if (o.redis_replicas > 0 && o.redis.empty() && o.redis_sentinels.empty()) {
    return usage("--redis-replicas needs --redis or --redis-sentinel");
  }
  if (o.redis_replicas > 0 && !(o.redis_wait_timeout > 0)) {
    return usage("--redis-wait-timeout must be more than 0 with --redis-replicas");
  }
  out->sentinels.clear();
  for (const std::string& text : o.redis_sentinels) {
    redis::HostPort s;
    if (Status st = redis::parse_sentinel(text, &s); !st.ok()) return st;
    out->sentinels.push_back(std::move(s));
  }
  out->master_name = o.redis_master;
  out->replicas = o.redis_replicas;
  out->wait_timeout = o.redis_wait_timeout;
  return Status::Ok();
}

}  // namespace smws::relay
