// SPDX-License-Identifier: Apache-2.0
// Subscriptions: which broadcast events a ws-relay client receives (SPEC
// "ws-relay subscriptions — one relay, many topics"; shapes in
// docs/protocol.md, a guide in docs/subscriptions.md).
//
//   Filter             a client's view: type globs, machine globs, hitl on/off
//   parse_*            the three ways a filter is written: a query string
//                      (?type=a,b&machine=m*&hitl=0), a --route FILTER
//                      (type:a,b;machine:m*) and a subscribe message
//                      ({"type":"subscribe","types":[…],"machines":[…]})
//   SubscriptionIndex  who gets an event, found without looking at the
//                      clients it does not go to
//   MachineHistory     --machine-history: the last N events of each machine,
//                      bounded in bytes, least recently active evicted first
//
// Pure logic, no sockets and no POCO (smws::core). Not thread-safe: each
// object is owned by one thread or used under one lock its owner names (in
// ws-relay the index is the loop thread's, the history lives in RelayHub
// under Relay::mu_).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "smws/status.h"

namespace smws {

// '*' matches any run of characters, the empty one too; every other
// character (including '?' and '[') matches itself. Machine ids and event
// types are plain identifiers, so one wildcard is all a filter needs, and a
// literal '?' in an id stays matchable.
bool glob_match(std::string_view pattern, std::string_view text);
inline bool is_glob(std::string_view pattern) {
  return pattern.find('*') != std::string_view::npos;
}

// The messages that reach every client whatever its types and machines,
// unless it opted out with hitl=0: HITL's interrupt and decision. (initial,
// gap, dropped, ping and error are addressed to one client, or made by the
// server, and never pass through a filter at all.)
bool is_hitl_type(std::string_view type);

struct Filter {
  // Globs, deduplicated, in the order given. Empty: every type / every
  // machine. An event matches when its type matches any type glob AND (when
  // `machines` is not empty) it has a string machine_id matching any machine
  // glob: an event without machine_id matches only an empty `machines`.
  std::vector<std::string> types;
  std::vector<std::string> machines;
  // false (?hitl=0): no interrupt/decision messages and an empty `pending`
  // in snapshots. Kept across subscribe messages.
  bool hitl = true;

  // Receives every event (HITL aside): the broadcast fast path applies.
  bool all_events() const { return types.empty() && machines.empty(); }
  bool matches_type(std::string_view type) const;
  // machine: the event's decoded machine_id, nullptr when it has none (or
  // when it is not a string).
  bool matches_machine(const std::string* machine) const;
  // The whole rule for a broadcast event, HITL included.
  bool matches(std::string_view type, const std::string* machine) const;
  // Snapshot narrowing (SPEC Details): only the machine globs count.
  bool shows_machine(std::string_view id) const;

  // {"types":[…],"machines":[…],"hitl":bool}, for logs and /healthz.
  std::string describe() const;
  bool operator==(const Filter& o) const {
    return types == o.types && machines == o.machines && hitl == o.hitl;
  }
};

// Splits "a,b*,c" into globs appended to *out (duplicates skipped). An empty
// glob ("", "a,,b", "a,") is a usage error naming `what` ("?type=").
Status parse_glob_list(std::string_view what, std::string_view csv,
                       std::vector<std::string>* out);

// --route's FILTER: "type:GLOB[,GLOB…]" and/or "machine:GLOB[,…]" joined by
// ';' (a key given twice adds to its list). Errors: an empty filter, a part
// without ':', an unknown key, an empty glob.
Status parse_route_filter(std::string_view text, Filter* out);

struct Route {
  std::string path;  // starts with '/', no '?'
  Filter filter;
};
// --route PATH=FILTER (split at the first '='). Usage errors name the flag
// value and the problem.
Status parse_route(std::string_view spec, Route* out);

// The filter of a client that connected with this (decoded) query string:
// `base` (the route's filter, or the empty one) with each key the query
// names replaced: every `type` parameter together makes the new types, every
// `machine` one the new machines; `hitl` is 0/1/false/true. Other parameters
// (token, since …) are not ours and are ignored. On error *out is `base`.
Status filter_from_query(const std::vector<std::pair<std::string, std::string>>& query,
                         const Filter& base, Filter* out);

// A subscribe message (already parsed, type "subscribe"): types and machines
// replace the filter's (a missing key is an empty list: everything), hitl is
// kept. Each present key must be a list of non-empty strings; otherwise an
// error naming it, and *filter is unchanged.
Status apply_subscribe(const nlohmann::json& message, Filter* filter);

// The error message a client gets for a bad filter: {"type":"error",
// "error":…} with the status's message.
std::string filter_error_message(const Status& status);

// ---------------------------------------------------------------- index

using SubscriberId = uint64_t;

// Clients by filter, so that the recipients of an event are found at a cost
// that follows their number, not the number of clients:
//   everyone   clients with no types and no machines
//   by machine clients whose machines are all exact names, under each name
//              (their type globs are checked on the few found there)
//   by type    clients with no machines whose types are all exact names
//   globs      the rest (a glob in the key they are indexed by): a short
//              list checked in full per event
// Each client is in exactly one of these, so select() never yields one twice.
class SubscriptionIndex {
 public:
  // Adds a client or replaces its filter.
  void set(SubscriberId id, Filter filter);
  void remove(SubscriberId id);
  const Filter* find(SubscriberId id) const;

  // Appends to *out every client that gets a broadcast event of this type
  // and machine (nullptr: none), each once, in no particular order. HITL
  // types go to every client that did not opt out.
  void select(std::string_view type, const std::string* machine,
              std::vector<SubscriberId>* out) const;

  size_t size() const { return entries_.size(); }
  // Clients with a types or machines filter ("subscribed" in /metrics).
  size_t filtered() const { return entries_.size() - everyone_.size(); }
  size_t hitl_opt_outs() const { return hitl_opt_outs_; }
  size_t glob_subscribers() const { return globs_.size(); }
  // Every client gets every event of this type: a plain broadcast to all
  // open clients is exactly right (and the fastest path).
  bool everyone_gets(std::string_view type) const;

 private:
  // An unordered set of ids with O(1) insert/erase and a dense vector to
  // iterate (order changes on erase).
  struct IdList {
    std::vector<SubscriberId> ids;
    std::unordered_map<SubscriberId, size_t> pos;
    void add(SubscriberId id);
    void erase(SubscriberId id);
    bool empty() const { return ids.empty(); }
    size_t size() const { return ids.size(); }
  };
  enum class Kind { kEveryone, kByMachine, kByType, kGlob };
  struct Entry {
    Filter filter;
    Kind kind = Kind::kEveryone;
  };
  static Kind kind_of(const Filter& f);
  void unlink(SubscriberId id, const Entry& e);

  std::unordered_map<SubscriberId, Entry> entries_;
  IdList everyone_;
  // Under each exact machine name: the clients that take any type there
  // (appended as they are, no lookup per client) and those whose type globs
  // must be checked.
  struct MachineWatchers {
    IdList any_type;
    IdList typed;
    bool empty() const { return any_type.empty() && typed.empty(); }
  };
  std::unordered_map<std::string, MachineWatchers> by_machine_;
  std::unordered_map<std::string, IdList> by_type_;
  IdList globs_;
  size_t hitl_opt_outs_ = 0;
};

// ------------------------------------------------------- machine history

// The text of one message, shared with the --history ring and the client
// queues (the same alias as relay_hub.h's).
using Payload = std::shared_ptr<const std::string>;

struct HeldEvent {
  uint64_t seq;  // the hub's running number (given with or without --seq)
  Payload payload;
};

// --machine-history N / --machine-history-bytes B. Bytes are the held
// events' text plus the machine ids (the payloads are shared with other
// holders, so this is an upper bound on what eviction frees, and the number
// a user can reason about). When an event pushes the total over B, the
// machines least recently active (an event of theirs is "activity") lose
// their whole history first, each counted in evictions(); a single machine
// over B alone keeps only its newest events that fit.
class MachineHistory {
 public:
  MachineHistory(size_t per_machine, size_t max_bytes);

  bool enabled() const { return per_machine_ > 0 && max_bytes_ > 0; }
  void add(const std::string& machine, std::string_view type, uint64_t seq, Payload payload);

  // Appends the held events of the machines `filter` names that match its
  // types too, with seq > after, oldest first (merged by seq across
  // machines). Exact names are looked up; a glob scans the held machines.
  // Nothing for a filter without machines (it names none).
  void collect(const Filter& filter, uint64_t after, std::vector<HeldEvent>* out) const;

  size_t machines() const { return index_.size(); }
  size_t events() const { return events_; }
  size_t bytes() const { return bytes_; }
  uint64_t evictions() const { return evictions_; }  // machines whose history was dropped

 private:
  struct Item {
    uint64_t seq;
    std::string type;
    Payload payload;
  };
  struct Machine {
    std::string id;
    std::deque<Item> items;  // oldest first, at most per_machine_
    size_t bytes = 0;
  };
  static size_t cost(const Item& item) { return item.payload->size() + item.type.size(); }
  void evict_front();
  void append_matching(const Machine& m, const Filter& filter, uint64_t after,
                       std::vector<HeldEvent>* out) const;

  size_t per_machine_;
  size_t max_bytes_;
  size_t bytes_ = 0;
  size_t events_ = 0;
  uint64_t evictions_ = 0;
  std::list<Machine> order_;  // least recently active first
  std::unordered_map<std::string, std::list<Machine>::iterator> index_;
};

}  // namespace smws
