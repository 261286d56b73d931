// SPDX-License-Identifier: Apache-2.0
// ws-relay's flags and its run function. The network core is
// smws::net::WsServer (one epoll thread); the protocol state is
// smws::RelayHub; HITL is smws::HitlTable. docs/architecture.md.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "smws/cli.h"
#include "smws/protocol.h"

namespace smws {

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

// Declares every flag on app (tests parse an argv through it).
void setup_ws_relay(CLI::App& app, RelayOptions& options);

// Serves until SIGINT/SIGTERM (or stdin EOF with --exit-on-eof); returns the
// exit code.
int run_ws_relay(const RelayOptions& options);

}  // namespace smws
