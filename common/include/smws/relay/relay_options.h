// SPDX-License-Identifier: Apache-2.0
// ws-relay's options, as its flags set them (cmd/ws-relay/ws_relay.cpp
// declares the flags; docs/man/ws-relay.1 describes them). Read-only once
// the relay runs.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "smws/cli.h"
#include "smws/protocol.h"

namespace smws::relay {

struct RelayOptions {
  std::string listen = protocol::kDefaultListen;
  std::string path = protocol::kDefaultWsPath;
  size_t max_queue = protocol::kDefaultMaxQueue;
  std::string slow_client = "disconnect";
  size_t history = 0;
  bool seq = false;
  double ping_interval = protocol::kDefaultPingInterval;
  double ping_timeout = -1;  // < 0: twice ping_interval
  bool app_ping = false;
  size_t max_clients = protocol::kDefaultMaxClients;
  // Hostile input at the edges (SPEC): --max-clients-per-ip, --max-queue-bytes,
  // --allow-host (repeatable).
  size_t max_clients_per_ip = protocol::kDefaultMaxClientsPerIp;
  size_t max_queue_bytes = protocol::kDefaultMaxQueueBytes;
  std::vector<std::string> allow_host;
  size_t max_message = protocol::kDefaultMaxMessage;
  std::vector<std::string> allow_origin;
  std::string token;
  std::string tls_cert;
  std::string tls_key;
  bool exit_on_eof = false;
  double drain_timeout = protocol::kDefaultDrainTimeout;
  double hitl_timeout = protocol::kDefaultHitlTimeout;
  std::string audit;
  // Subscriptions (docs/subscriptions.md): --route PATH=FILTER (repeatable),
  // --machine-history N, --machine-history-bytes BYTES.
  std::vector<std::string> routes;
  size_t machine_history = 0;
  size_t machine_history_bytes = size_t{64} << 20;
  // --redis: one stream for a group of relays (docs/scale-out.md).
  std::string redis;
  std::string redis_stream = "smws";
  size_t redis_history = 10000;
  size_t redis_buffer = 100000;
  CommonFlags common;
};

}  // namespace smws::relay
