// SPDX-License-Identifier: Apache-2.0
// GroupMember — a relay's membership in a --redis group (docs/scale-out.md):
// stdin events and interrupts go to the group's stream (RedisStream), and
// what the stream holds comes back to every relay in one order with one
// seq. Here: the serving gate (a new client waits for the first load, or at
// most kGroupStartWait), the load (on_loaded: the hub, the pending table
// and which interrupts are ours reset to the group's state; a resync tells
// the clients with a `gap` and a fresh snapshot), the entries (on_entries:
// applied to the hub and pending table, fanned out; the decisions of our
// interrupts printed and sent to reply_to), decisions (the first valid one
// in Redis wins) and timeouts (proposed by every relay, decided once).
//
// Thread: the loop thread only; RedisStream calls the Listener methods on
// it, and does its own I/O without blocking. check_interrupt is the hub's
// interceptor, called with RelayState::mu held on whichever thread reads
// stdin. A unit test drives on_loaded/on_entries directly with a stream
// that never connects (tests/unit/relay_group_member_test.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "smws/redis_stream.h"
#include "smws/relay/audience.h"
#include "smws/relay/decisions.h"
#include "smws/relay/relay_io.h"
#include "smws/relay/relay_metrics.h"
#include "smws/relay/relay_options.h"
#include "smws/relay/relay_state.h"

namespace smws::relay {

// A relay that reaches Redis at start serves its first client only after it
// has loaded the group's state; one that cannot reach it serves what it has
// after at most this long (SPEC), degraded, and catches up later.
constexpr double kGroupStartWait = 3.0;

class GroupMember : public redis::RedisStream::Listener {
 public:
  // make_hub: a fresh hub as the relay configures it (a load replaces it).
  // started: the relay's start (monotonic seconds), for kGroupStartWait.
  GroupMember(RelayState* state, RelayIo* io, Audience* audience, Decisions* decisions,
              const RelayOptions& options, const redis::RedisUrl& url,
              std::function<RelayHub()> make_hub, double started);

  // Watches the stream's fd and starts the link (before run()).
  void start(double mono);
  // The hub's interceptor for a stdin interrupt: checked and given a
  // group-unique id; it becomes pending when it comes back through the stream.
  RelayHub::Intercept check_interrupt(std::string_view event) REQUIRES(state_->mu);
  void assert_locked() const ASSERT_CAPABILITY(state_->mu) { state_->mu.assert_held(); }
  // Moves what stdin produced into the stream (one script call per batch).
  void push();
  // A client's decision: checked here, decided by the group.
  // Roles on: the policy is checked here too; a quorum (required > 1) is
  // not supported in a group yet and is refused with an error.
  void decide(net::ClientId id, const nlohmann::json& decision, const Peer& who, double mono);
  // Timeouts, retries, the serving gate, the drain before exit.
  void tick(double mono);
  // stdin ended with --exit-on-eof: the buffered events reach the group
  // first, then the clients are drained (on the tick).
  void drain_then_exit() { draining_for_exit_ = true; }

  // --- RedisStream::Listener (loop thread) ---
  void on_loaded(const redis::GroupSnapshot& snapshot, bool first) override;
  void on_entries(const std::vector<redis::GroupSnapshot::Entry>& entries) override;
  void on_link(bool up) override;

  GroupCounters counters() const;
  uint64_t not_allowed() const { return not_allowed_; }

 private:
  void propose_timeout(const std::string& interrupt_id, const std::string& text);

  RelayState* state_;
  RelayIo* io_;
  Audience* audience_;
  Decisions* decisions_;
  const RelayOptions& options_;
  std::function<RelayHub()> make_hub_;
  const double started_;
  std::string relay_id_;
  std::unique_ptr<redis::RedisStream> stream_;
  // Timeouts the group could not record while Redis was away: retried.
  std::vector<std::pair<std::string, std::string>> timeouts_to_retry_;
  bool draining_for_exit_ = false;
  // Decisions of this relay's clients that won in Redis and have not come
  // back through the tail yet: interrupt_id -> client. A resync before
  // they do (Redis lost them) tells the client and counts them.
  std::unordered_map<std::string, net::ClientId> won_unseen_;
  uint64_t decisions_unavailable_ = 0;  // "redis is unavailable" answers
  uint64_t decisions_lost_ = 0;         // won, then lost with Redis's data
  uint64_t not_allowed_ = 0;            // decisions no policy allowed (/metrics)
  std::string epoch_;                   // the epoch of the last load
};

}  // namespace smws::relay
