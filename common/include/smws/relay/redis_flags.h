// SPDX-License-Identifier: Apache-2.0
// ws-relay's group flags that go beyond --redis URL (docs/scale-out.md,
// "Redis that fails over"): --redis-sentinel HOST:PORT (repeatable),
// --redis-master NAME, --redis-replicas N, --redis-wait-timeout SECONDS,
// checked against each other and turned into the stream's options. Pure;
// the main thread (run_ws_relay, to refuse bad flags with 64) and the Relay's
// constructor (to fill its StreamOptions) call it.
#pragma once

#include "smws/redis_stream.h"
#include "smws/relay/relay_options.h"
#include "smws/status.h"

namespace smws::relay {

// Sets out->sentinels, master_name, replicas and wait_timeout from o. A bad
// combination or value is Status::kUsage naming the flag.
Status group_stream_options(const RelayOptions& o, redis::StreamOptions* out);

}  // namespace smws::relay
