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
  // Who may decide (SPEC "Who may decide"; docs/hitl.md, "Who may decide"): identity
  // sources, then policies, then where replies may go.
  std::string users;                          // --users FILE
  std::vector<std::string> jwt_keys;          // --jwt-key FILE (repeatable)
  std::string jwt_secret_file;                // --jwt-secret-file FILE
  std::string jwt_audience;                   // --jwt-audience A
  std::string jwt_name_claim = "sub";         // --jwt-name-claim
  std::string jwt_groups_claim = "groups";    // --jwt-groups-claim
  std::vector<std::string> trusted_proxies;   // --trusted-proxy CIDR (repeatable)
  std::string user_header = "X-Forwarded-User";
  std::string groups_header = "X-Forwarded-Groups";
  std::vector<std::string> approvers;         // --approvers GROUP|@NAME (repeatable)
  std::string policy;                         // --policy FILE
  std::string reply_dir;                      // --reply-dir DIR
  // Redis that fails over (docs/scale-out.md, "Sentinel"): --redis-sentinel
  // HOST:PORT (repeatable) with --redis-master NAME; --redis-replicas N and
  // --redis-wait-timeout SECONDS for WAIT.
  std::vector<std::string> redis_sentinels;
  std::string redis_master;
  int redis_replicas = 0;
  double redis_wait_timeout = 1.0;
  CommonFlags common;
};

}  // namespace smws::relay
