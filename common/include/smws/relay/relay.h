// SPDX-License-Identifier: Apache-2.0
// smws::relay::Relay — ws-relay's logic, assembled: the handler of
// WsServer's events (smws::net). cmd/ws-relay parses the flags and wires a
// Relay to a WsServer; what the relay decides lives in the parts below,
// each in its own file, each unit-tested through the RelayIo seam:
//
//   relay_state.h    what more than one thread touches, and its one lock
//   relay_io.h       the seam: every effect on clients, stdout, reply_to, the audit file
//   stdin_source.h   stdin lines into the hub (on the loop, or the stdin thread)
//   audience.h       filters, routes, greeting exactly once, refresh/subscribe, fan-out
//   decisions.h      interrupts, decisions, timeouts; --audit's record-then-deliver
//   group_member.h   --redis: the group's stream, load and entries, the serving gate
//   relay_http.h     /healthz, /metrics and the dashboard's routes
//   relay_metrics.h  their text, from a copy of the counters
//   refusal_advice.h the log line for a refused upgrade
//
// Threads, and what each owns:
//   main thread   runs WsServer::run(): the epoll loop owning every socket.
//                 Calls the handler methods below, and so every part's
//                 loop-thread methods. When stdin can be polled it is read
//                 on this thread too (stdin_source.h).
//   stdin thread  only when stdin is a regular file: read_stdin().
//   output thread writes stdout and --audit records (OutputThread); posts
//                 each record's outcome to RelayState::audit_outcomes and
//                 wakes the loop, whose on_wake acts on it (decisions.h).
// docs/architecture.md has the map of common/.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "smws/hitl.h"
#include "smws/net/ws_server.h"
#include "smws/output_thread.h"
#include "smws/redis_stream.h"
#include "smws/relay/audience.h"
#include "smws/relay/decisions.h"
#include "smws/relay/group_member.h"
#include "smws/relay/identities.h"
#include "smws/relay/relay_io.h"
#include "smws/relay/relay_metrics.h"
#include "smws/relay/relay_options.h"
#include "smws/relay/relay_state.h"
#include "smws/relay/stdin_source.h"
#include "smws/subscription.h"

namespace smws::relay {

class Relay : public net::WsServerHandler {
 public:
  // redis_url: the parsed --redis URL, or nullptr for a relay on its own.
  // audit: the --audit file (open or not), written by the output thread.
  Relay(const RelayOptions& options, AuditLog* audit, const redis::RedisUrl* redis_url);

  // Who may connect and decide (identities.h), loaded by run_ws_relay;
  // before run(). reload() loads them again from the same flags (SIGHUP,
  // on the loop thread): the connections of a person removed or changed
  // are closed 1008 "credentials revoked".
  void set_identities(Identities identities);
  Status reload();
  // ServerOptions::authenticate: who a request is (loop thread).
  auth::AuthResult authenticate(const net::HttpRequest& request) const;
  bool names_connections() const { return identities_.roles(); }

  // Registers the relay's HTTP routes; before server->run().
  void attach(net::WsServer* server);
  // --route paths and their filters (validated by run_ws_relay). Before run().
  void set_routes(std::vector<Route> routes) { audience_.set_routes(std::move(routes)); }
  // Starts the Redis link (loop thread, before run()).
  void start_group();

  // stdin (stdin_source.h): the stdin thread's body, or the loop's watch
  // callback for fd 0.
  void read_stdin(int stop_fd) { stdin_.read_stdin(stop_fd); }
  void read_stdin_on_loop() { stdin_.read_on_loop(); }

  // --- main thread, after run() ---
  void finish();

  // --- loop thread (WsServerHandler) ---
  void on_open(const net::ClientInfo& client) override;
  void on_message(net::ClientId id, std::string_view payload, bool binary) override;
  void on_close(net::ClientId id) override { audience_.on_close(id); }
  void on_wake() override;
  void on_tick() override;
  void on_refused(const net::RefusedUpgrade& refused) override;

 private:
  RelayHub make_hub();
  void handle_message(net::ClientId id, std::string_view payload);
  void on_stdin_eof();
  // A copy of the counters /healthz and /metrics show; takes mu for what it guards.
  RelayCounters counters();

  const RelayOptions& options_;
  const bool seq_;        // --seq, implied by --redis
  const double started_;  // monotonic seconds at construction
  RelayState state_;
  OutputThread output_;  // after state_, which its record callbacks use
  ServerIo io_;
  net::WsServer* server_ = nullptr;
  Audience audience_;
  Decisions decisions_;
  std::unique_ptr<GroupMember> group_;  // --redis only
  StdinSource stdin_;
  net::RefusalLog refusal_log_;  // which refused upgrades to log
  Identities identities_;        // loop thread (replaced by reload())
  bool eof_handled_ = false;
};

}  // namespace smws::relay
