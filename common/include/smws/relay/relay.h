// SPDX-License-Identifier: Apache-2.0
// smws::relay::Relay — ws-relay's logic: the handler of WsServer's events
// (smws::net), the owner of the protocol state (RelayHub), the decisions
// (HitlTable, --audit) and, with --redis, the group member. cmd/ws-relay
// parses the flags and wires a Relay to a WsServer; everything the relay
// decides lives here, where tests can reach it. docs/architecture.md has
// the map of common/.
//
// Threads, and what each owns:
//   main thread   runs WsServer::run(): the epoll loop owning every socket.
//                 Calls the Relay handler methods below. When stdin can be
//                 polled (a pipe, socket or terminal: the usual
//                 `sm-listen | ws-relay`), the loop also reads it: one read(2)
//                 per readiness, each line to the hub, each broadcast frame
//                 encoded ONCE and queued to every client. That saves a
//                 thread hop (a wake-up) per event, which is most of the
//                 latency on a busy machine.
//   stdin thread  only when stdin is a regular file (epoll refuses those):
//                 does the same but appends the frames to inbox_ and wakes
//                 the loop through an eventfd. Never waits on a client.
//   output thread writes client messages and decisions to stdout and records
//                 to the --audit file (fsync), so neither a full stdout pipe
//                 nor an fsync can stall the loop. With --audit a decision
//                 or timeout is recorded first and delivered after: the
//                 output thread posts each record's outcome to
//                 audit_outcomes_ and wakes the loop, whose on_wake commits
//                 (and delivers) or aborts it (docs/hitl.md, "Durable
//                 approvals").
//
// Subscriptions: subs_ (the client index) and routes_ belong to the loop
// thread; a broadcast goes through fan_out(), which is a plain broadcast
// while every client takes every event, and otherwise sends to the clients
// the index selects (see subscription.h), so its cost follows the audience.
//
// Lock: mu_ guards the members marked GUARDED_BY(mu_) below (clang checks
// it: thread_annotations.h). Taking the events out of inbox_ and taking a snapshot for
// a new client happen under the same lock hold, so a new client gets every
// event exactly once: either inside its snapshot/history or live, never both
// or neither.
//
// --audit and stdin: an interrupt read from stdin is recorded before it is
// pending and broadcast. Until its outcome, whichever thread reads stdin
// reads no further line (stdin order is kept: nothing overtakes it): the
// loop unwatches fd 0, the stdin thread waits on stdin_resume_. The loop's
// handle_audit_outcomes then publishes (or refuses) it and resumes stdin.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "smws/hitl.h"
#include "smws/ndjson.h"
#include "smws/net/ws_server.h"
#include "smws/output_thread.h"
#include "smws/redis_stream.h"
#include "smws/relay/relay_metrics.h"
#include "smws/relay/relay_options.h"
#include "smws/relay_hub.h"
#include "smws/status.h"
#include "smws/subscription.h"
#include "smws/thread_annotations.h"

namespace smws::relay {

// Longest stdin line accepted. Events are at most 64 KiB as datagrams; 1 MiB
// leaves room for events built by other producers while bounding memory.
constexpr size_t kMaxStdinLine = 1 << 20;

// One broadcast and what its audience is chosen by.
struct Outgoing {
  net::Frame frame;
  std::string type;
  std::optional<std::string> machine;
};
class Relay : public net::WsServerHandler, public redis::RedisStream::Listener {
 public:
  // redis_url: the parsed --redis URL, or nullptr for a relay on its own.
  // audit: the --audit file (open or not), written by the output thread.
  Relay(const RelayOptions& options, AuditLog* audit, const redis::RedisUrl* redis_url);

  // Starts the Redis link (loop thread, before run()).
  void start_group();

  // --- loop thread (RedisStream::Listener), --redis only ---
  void on_loaded(const redis::GroupSnapshot& snapshot, bool first) override;
  void on_entries(const std::vector<redis::GroupSnapshot::Entry>& entries) override;
  void on_link(bool up) override;

  // Registers the relay's HTTP routes; before server->run().
  void attach(net::WsServer* server);
  // --route paths and their filters (validated by run_ws_relay). Before run().
  void set_routes(std::vector<Route> routes) {
    for (auto& r : routes) routes_[r.path] = std::move(r.filter);
  }

  // --- stdin: on the loop thread when epoll can watch fd 0 (a pipe, socket
  // or terminal: one thread hop less per event), else on the stdin thread
  // (a regular file). Exactly one of the two reads stdin_reader_.
  void read_stdin(int stop_fd);  // the stdin thread's body
  void read_stdin_on_loop();     // loop thread: the watch callback for fd 0
  // Loop thread: hands the buffered lines on, then watches fd 0 again
  // unless an interrupt is held or stdin ended. fd 0 is not watched on entry.
  void continue_stdin_on_loop();
  // Stdin thread: waits while an interrupt is held; false when stop_fd
  // asks the thread to end meanwhile.
  bool wait_while_held(int stop_fd);

  // --- main thread, after run() ---
  void finish();

  // --- loop thread (WsServerHandler) ---
  void on_open(const net::ClientInfo& client) override;
  void on_message(net::ClientId id, std::string_view payload, bool binary) override;
  void on_close(net::ClientId id) override {
    peers_.erase(id);
    subs_.remove(id);
    // A client gone before the group's first load is not greeted.
    waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                  [id](const Waiting& w) { return w.id == id; }),
                   waiting_.end());
  }
  void on_wake() override;
  void on_tick() override;
  void on_refused(const net::RefusedUpgrade& refused) override;

 private:
  RelayHub make_hub();
  bool group_enabled() const { return !options_.redis.empty(); }
  RelayHub::Intercept on_interrupt(std::string_view event) REQUIRES(mu_);
  RelayHub::Intercept on_group_interrupt(std::string_view event) REQUIRES(mu_);
  // Moves what stdin produced for the group into the stream (loop thread).
  void push_to_group();
  // A new client, until it gets its first messages.
  struct Waiting {
    net::ClientId id;
    std::string peer;
    std::optional<uint64_t> since;
    Filter filter;
    Status bad;  // a bad query filter, answered with an error
  };
  // Joins a client with its first messages (snapshot, history or since).
  void greet(const Waiting& w);
  void handle_message(net::ClientId id, std::string_view payload);
  void deliver(const HitlResolution& resolution) REQUIRES(mu_);  // loop thread
  // --audit: hands resolution's record to the output thread; it is
  // delivered (or refused) when the outcome comes back. client: the deciding
  // client, none for a timeout. group: see InFlight. Loop thread.
  void record_then_deliver(HitlResolution resolution, std::optional<net::ClientId> client,
                           bool group = false);
  // Hands any record to the output thread; its outcome is posted back with
  // ticket (0: only the audit log's health learns of it; kHeldInterrupt:
  // held_interrupt_'s). Any thread.
  void record(nlohmann::json record, uint64_t ticket);
  // Loop thread: acts on the outcomes the output thread posted.
  void handle_audit_outcomes();
  void drain_inbox_locked(std::vector<Outgoing>* out) REQUIRES(mu_);
  // Hands every complete buffered stdin line to the hub and appends the
  // frames to broadcast to *out. mu_ held. True once stdin has ended.
  bool ingest_buffered_locked(std::vector<Outgoing>* out) REQUIRES(mu_);
  // Loop thread: queues one broadcast to the clients whose filter takes it.
  void fan_out(const Outgoing& out);
  void subscribe(net::ClientId id, const nlohmann::json& message);
  void on_stdin_eof();  // loop thread
  // A copy of the counters /healthz and /metrics show (relay_metrics.h).
  // Loop thread; takes mu_ for what it guards.
  RelayCounters counters();

  const RelayOptions& options_;
  const bool seq_;  // --seq, implied by --redis
  net::WsServer* server_ = nullptr;
  const double started_;  // monotonic_seconds() at construction

  Mutex mu_;
  RelayHub hub_ GUARDED_BY(mu_);
  HitlTable hitl_ GUARDED_BY(mu_);
  std::vector<Outgoing> inbox_ GUARDED_BY(mu_);  // broadcasts for the loop
  bool stdin_eof_ GUARDED_BY(mu_) = false;
  // Owned by whichever thread reads stdin (see read_stdin/read_stdin_on_loop).
  ndjson::LineReader stdin_reader_{STDIN_FILENO, kMaxStdinLine};
  bool eof_handled_ = false;           // loop thread
  std::unordered_map<net::ClientId, std::string> peers_;  // loop thread: id → address
  SubscriptionIndex subs_;                          // loop thread: open clients' filters
  std::unordered_map<std::string, Filter> routes_;  // --route: path → filter (read-only)
  std::vector<SubscriberId> recipients_;            // loop thread: fan_out's scratch
  uint64_t filtered_out_ = 0;  // loop thread: deliveries a filter spared (/metrics)
  // --- --audit: durable before acknowledged (docs/hitl.md) ---
  const bool audit_;  // an audit file is open
  // A resolution whose record the output thread is writing, by ticket.
  struct InFlight {
    HitlResolution resolution;
    std::optional<net::ClientId> client;  // who decided; none for a timeout
    // --redis: a decision the group already made, whose origin this relay
    // is: only its stdout line and reply datagram wait for the record.
    bool group = false;
  };
  std::unordered_map<uint64_t, InFlight> in_flight_;  // loop thread
  uint64_t next_ticket_ = 1;                           // loop thread
  static constexpr uint64_t kHeldInterrupt = UINT64_MAX;  // the ticket of held_interrupt_
  // The stdin interrupt whose record is being written; stdin is not read
  // on until it is published or refused.
  struct HeldInterrupt {
    nlohmann::json event;  // as it will be broadcast (interrupt_id, timeout filled in)
    uint64_t line = 0;     // its stdin line, for the warning when it is refused
  };
  std::optional<HeldInterrupt> held_interrupt_ GUARDED_BY(mu_);
  std::condition_variable stdin_resume_;         // the stdin thread waits here while one is held
  bool stdin_on_loop_ = false;                   // loop thread: fd 0 is read by the loop
  // --redis: the group's decisions whose record failed, retried on the tick.
  std::vector<HitlResolution> group_records_to_retry_;  // loop thread
  struct AuditOutcome {
    uint64_t ticket;    // 0: a record nobody waits for (an interrupt)
    std::string error;  // empty: written and fsynced
  };
  std::vector<AuditOutcome> audit_outcomes_ GUARDED_BY(mu_);  // output thread -> loop
  std::string audit_error_;    // loop thread: why the last record failed; empty once one is written
  uint64_t audit_failures_ = 0;  // loop thread: records refused (/metrics)
  net::RefusalLog refusal_log_;  // loop thread: which refused upgrades to log
  OutputThread output_;  // after what its record callbacks use

  // --- --redis: the group (docs/scale-out.md) ---
  std::unique_ptr<redis::RedisStream> group_;  // loop thread
  std::string relay_id_;
  // Stdin events for the stream, from whichever thread read stdin.
  std::vector<redis::Outgoing> group_inbox_ GUARDED_BY(mu_);
  // Interrupts this relay read from stdin and whose decision it must print
  // and send to reply_to: interrupt_id -> reply_to. Bounded by the pending
  // table (entries leave with their decision).
  std::unordered_map<std::string, std::string> origin_ GUARDED_BY(mu_);
  uint64_t next_interrupt_ GUARDED_BY(mu_) = 1;
  std::string last_interrupt_id_ GUARDED_BY(mu_);
  // Until the first load (or kGroupStartWait), new clients wait here, not
  // joined, for their first messages.
  bool serving_ = true;                                   // loop thread
  std::vector<Waiting> waiting_;                          // loop thread
  // Timeouts the group could not record while Redis was away: retried.
  std::vector<std::pair<std::string, std::string>> timeouts_to_retry_;  // loop thread
  bool draining_for_exit_ = false;                        // loop thread
  // Decisions of this relay's clients that won in Redis and have not come
  // back through the tail yet: interrupt_id -> client. A resync before
  // they do (Redis lost them) tells the client and counts them.
  std::unordered_map<std::string, net::ClientId> won_unseen_;  // loop thread
  uint64_t decisions_unavailable_ = 0;  // loop thread: "redis is unavailable" answers
  uint64_t decisions_lost_ = 0;         // loop thread: won, then lost with Redis's data
  std::string group_epoch_;             // loop thread: the epoch of the last load
};

}  // namespace smws::relay
