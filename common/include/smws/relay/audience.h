// SPDX-License-Identifier: Apache-2.0
// Audience — who gets what: the open clients' filters (?type=, ?machine=,
// --route, subscribe), their greeting (a filter error, then snapshot or
// history, exactly once, ahead of the live stream), refresh and subscribe
// replies, and the fan-out of each broadcast to the clients whose filter
// takes it (SubscriptionIndex: the cost follows the audience).
//
// Thread: the loop thread only. Everything here but the hub is its own;
// the hub is read under RelayState::mu. Every effect goes through RelayIo.
//
// Exactly once: greet() and subscribe() take the stdin thread's pending
// broadcasts (RelayState::inbox) and the client's view under one hold of
// mu, send those broadcasts to the clients already there, and only then
// add the client (or its new filter): an event is either in the view or
// live after it, never both or neither.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/auth/identity.h"
#include "smws/net/ws_server.h"
#include "smws/relay/relay_io.h"
#include "smws/relay/relay_state.h"
#include "smws/status.h"
#include "smws/subscription.h"

namespace smws::relay {

// Who a client is, as the relay established it (identities.h): never
// what the client claims.
struct Peer {
  std::string address;     // "ip:port", or the trusted proxy's X-Forwarded-For entry
  auth::Identity identity;
  std::optional<double> expires;  // monotonic deadline of a JWT's exp
};

class Audience {
 public:
  // seq: ?since= is honoured (--seq, or --redis).
  Audience(RelayState* state, RelayIo* io, bool seq) : state_(state), io_(io), seq_(seq) {}

  // --route paths and their filters (validated by run_ws_relay). Before run().
  void set_routes(std::vector<Route> routes) {
    for (auto& r : routes) routes_[r.path] = std::move(r.filter);
  }
  // A group relay before its first load: new clients wait (not joined)
  // until serve() greets them, so none sees a state that is not the group's.
  void hold_new_clients() { holding_ = true; }
  bool serving() const { return !holding_; }
  void serve(double now);  // now: wall seconds, for the snapshots

  // now: wall seconds (snapshots); mono: monotonic (a JWT's deadline).
  // unverified: the identity when the server named none (identities.h).
  void on_open(const net::ClientInfo& client, double now, double mono = 0,
               const auth::Identity& unverified = auth::Identity::anonymous());
  void on_close(net::ClientId id);
  // Queues one broadcast to the clients whose filter takes it.
  void fan_out(const Outgoing& out);
  void fan_out(const std::vector<Outgoing>& out) {
    for (const Outgoing& o : out) fan_out(o);
  }
  // The client's `refresh`: its snapshot, under its filter.
  void refresh(net::ClientId id, double now);
  // The client's `subscribe`: its new view, then the live stream under it.
  void subscribe(net::ClientId id, const nlohmann::json& message, double now);
  // --redis resync: the gap notice to everyone, then each client's snapshot.
  void resync(const nlohmann::json& gap, double now);

  // The address the client connected from ("" once gone).
  std::string peer(net::ClientId id) const;
  // Who it is (nullptr once gone).
  const Peer* client(net::ClientId id) const;
  // The open clients whose identity expired by mono (a JWT's exp); each is
  // returned once (the caller closes it).
  std::vector<net::ClientId> expired(double mono);
  // The open clients whose identity satisfies keep() no more (SIGHUP).
  std::vector<net::ClientId> select(const std::function<bool(const Peer&)>& drop) const;
  size_t subscribed() const { return subs_.filtered(); }
  uint64_t filtered_out() const { return filtered_out_; }

 private:
  // A new client, until it gets its first messages.
  struct Waiting {
    net::ClientId id;
    std::string peer;
    auth::Identity identity;
    std::optional<uint64_t> since;
    Filter filter;
    Status bad;  // a bad query filter, answered with an error
  };
  void greet(const Waiting& w, double now);

  RelayState* state_;
  RelayIo* io_;
  const bool seq_;
  bool holding_ = false;
  std::vector<Waiting> waiting_;                          // held new clients
  std::unordered_map<net::ClientId, Peer> peers_;          // id -> who
  SubscriptionIndex subs_;                                // open clients' filters
  std::unordered_map<std::string, Filter> routes_;        // --route: path -> filter
  std::vector<SubscriberId> recipients_;                  // fan_out's scratch
  uint64_t filtered_out_ = 0;  // deliveries a filter spared (/metrics)
};

}  // namespace smws::relay
