// SPDX-License-Identifier: Apache-2.0
// ws-relay: wiring of WsServer (sockets), RelayHub (protocol state) and
// HitlTable (decisions).
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
// Lock: mu_ guards hub_, hitl_, inbox_, stdin_eof_, audit_outcomes_ and
// held_interrupt_. Taking the events out of inbox_ and taking a snapshot for
// a new client happen under the same lock hold, so a new client gets every
// event exactly once: either inside its snapshot/history or live, never both
// or neither.
//
// --audit and stdin: an interrupt read from stdin is recorded before it is
// pending and broadcast. Until its outcome, whichever thread reads stdin
// reads no further line (stdin order is kept: nothing overtakes it): the
// loop unwatches fd 0, the stdin thread waits on stdin_resume_. The loop's
// handle_audit_outcomes then publishes (or refuses) it and resumes stdin.
#include "ws_relay.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/listen_address.h"
#include "smws/log.h"
#include "smws/ndjson.h"
#include "smws/net/dashboard.h"
#include "smws/web_assets.h"
#include "smws/net/ws_server.h"
#include "smws/output_thread.h"
#include "smws/prometheus.h"
#include "smws/protocol.h"
#include "smws/protocol_messages.h"
#include "smws/redis_stream.h"
#include "smws/relay_hub.h"
#include "smws/shutdown.h"
#include "smws/subscription.h"
#include "smws/ws_frame.h"

namespace smws {
namespace {

// Longest stdin line accepted. Events are at most 64 KiB as datagrams; 1 MiB
// leaves room for events built by other producers while bounding memory.
constexpr size_t kMaxStdinLine = 1 << 20;

// The relay's clocks (its own, not the server's): wall time for event
// timestamps and `last_activity`, monotonic time for HITL deadlines and
// uptime (immune to clock steps).
double wall_now() { return wall_seconds(); }
double mono_now() { return monotonic_seconds(); }

// A relay that reaches Redis at start serves its first client only after it
// has loaded the group's state; one that cannot reach it serves what it has
// after at most this long (SPEC), degraded, and catches up later.
constexpr double kGroupStartWait = 3.0;

std::string random_hex(size_t bytes) {
  std::random_device rd;
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

// While the audit file cannot be written, a retry storm (every tick retries
// each due timeout; approvers resend) must not become a line per attempt:
// the first failure is reported at once, then one line per this many
// seconds with the count of the failures in between.
constexpr double kAuditReportEvery = 10.0;

// Records go to the --audit file when one is open; without one, nowhere.
// Runs on the output thread, which owns the AuditLog and the report state.
OutputThread::RecordSink audit_sink(AuditLog* audit) {
  if (!audit->is_open()) return nullptr;
  struct Reports {
    bool failing = false;
    double last = 0;
    uint64_t unreported = 0;
  };
  auto reports = std::make_shared<Reports>();
  return [audit, reports](const nlohmann::json& record) -> std::string {
    std::string error;
    if (audit->append(record, error)) {
      if (reports->failing) {
        log::warn("audit file " + audit->path() + ": written again; decisions are recorded and delivered");
        *reports = Reports{};
      }
      return {};
    }
    const double now = mono_now();
    if (!reports->failing || now - reports->last >= kAuditReportEvery) {
      std::string more = reports->unreported == 0
                             ? std::string()
                             : " (" + std::to_string(reports->unreported) +
                                   " more records refused since the last report)";
      log::error(error + ": decisions and timeouts are refused until it can be written" + more);
      reports->failing = true;
      reports->last = now;
      reports->unreported = 0;
    } else {
      ++reports->unreported;
    }
    return error;
  };
}

HubOptions hub_options(const RelayOptions& o) {
  HubOptions h;
  h.history = o.history;
  h.seq = o.seq;
  h.machine_history = o.machine_history;
  h.machine_history_bytes = o.machine_history_bytes;
  return h;
}

// One broadcast and what its audience is chosen by.
struct Outgoing {
  net::Frame frame;
  std::string type;
  std::optional<std::string> machine;
};

class Relay : public net::WsServerHandler, public redis::RedisStream::Listener {
 public:
  // redis_url: the parsed --redis URL, or nullptr for a relay on its own.
  Relay(const RelayOptions& options, AuditLog* audit, const redis::RedisUrl* redis_url)
      : options_(options),
        seq_(options.seq || redis_url != nullptr),
        hub_(make_hub()),
        hitl_(HitlOptions{options.hitl_timeout, kHitlMaxPending}),
        audit_(audit->is_open()),
        output_(STDOUT_FILENO, audit_sink(audit)) {
    if (redis_url) {
      relay_id_ = random_hex(6);
      redis::StreamOptions so;
      so.url = *redis_url;
      so.stream = options.redis_stream;
      so.history = options.redis_history;
      so.buffer = options.redis_buffer;
      so.load_recent = options.redis_history;
      so.max_machines = hub_options(options).max_machines;  // evicted as the relays' tables evict
      so.relay_id = relay_id_;
      so.epoch_candidate = random_hex(8);
      group_ = std::make_unique<redis::RedisStream>(so, this);
      serving_ = false;
    }
  }

  // Starts the Redis link (loop thread, before run()).
  void start_group() {
    if (!group_) return;
    if (!server_->watch(group_->fd(), [this] { group_->on_readable(); })) {
      log::error("redis: cannot watch the connection set");
    }
    group_->start(mono_now());
  }

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
  void finish() {
    if (!output_.stop()) {
      log::warn("stdout is not being read; exiting without writing the rest");
      log::stop_async();  // that warning too, if stderr takes it
      std::_Exit(kExitOk);
    }
  }

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
  RelayHub make_hub() {
    // In a group, `?since=` may resume anywhere in the last --redis-history
    // events, so that many are held (the replay to new clients stays
    // --history).
    HubOptions h = hub_options(options_);
    h.seq = seq_;
    if (group_enabled()) h.hold = options_.redis_history;
    RelayHub hub(h);
    hub.set_interceptor("interrupt", [this](std::string_view event, double) {
      return group_enabled() ? on_group_interrupt(event) : on_interrupt(event);
    });
    hub.set_pending_provider([this](double) { return hitl_.pending_json(mono_now()).dump(); });
    return hub;
  }
  bool group_enabled() const { return !options_.redis.empty(); }
  RelayHub::Intercept on_interrupt(std::string_view event);
  RelayHub::Intercept on_group_interrupt(std::string_view event);  // mu_ held
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
  void deliver(const HitlResolution& resolution);  // loop thread, mu_ held
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
  void drain_inbox_locked(std::vector<Outgoing>* out);
  // Hands every complete buffered stdin line to the hub and appends the
  // frames to broadcast to *out. mu_ held. True once stdin has ended.
  bool ingest_buffered_locked(std::vector<Outgoing>* out);
  // Loop thread: queues one broadcast to the clients whose filter takes it.
  void fan_out(const Outgoing& out);
  void subscribe(net::ClientId id, const nlohmann::json& message);
  void on_stdin_eof();  // loop thread
  std::string metrics_text();
  std::string healthz_text();

  const RelayOptions& options_;
  const bool seq_;  // --seq, implied by --redis
  net::WsServer* server_ = nullptr;
  const double started_ = mono_now();

  std::mutex mu_;
  RelayHub hub_;                       // guarded by mu_
  HitlTable hitl_;                     // guarded by mu_
  std::vector<Outgoing> inbox_;        // guarded by mu_: broadcasts for the loop
  bool stdin_eof_ = false;             // guarded by mu_
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
  std::optional<HeldInterrupt> held_interrupt_;  // guarded by mu_
  std::condition_variable stdin_resume_;         // the stdin thread waits here while one is held
  bool stdin_on_loop_ = false;                   // loop thread: fd 0 is read by the loop
  // --redis: the group's decisions whose record failed, retried on the tick.
  std::vector<HitlResolution> group_records_to_retry_;  // loop thread
  struct AuditOutcome {
    uint64_t ticket;    // 0: a record nobody waits for (an interrupt)
    std::string error;  // empty: written and fsynced
  };
  std::vector<AuditOutcome> audit_outcomes_;  // guarded by mu_: output thread -> loop
  std::string audit_error_;    // loop thread: why the last record failed; empty once one is written
  uint64_t audit_failures_ = 0;  // loop thread: records refused (/metrics)
  net::RefusalLog refusal_log_;  // loop thread: which refused upgrades to log
  OutputThread output_;  // after what its record callbacks use

  // --- --redis: the group (docs/scale-out.md) ---
  std::unique_ptr<redis::RedisStream> group_;  // loop thread
  std::string relay_id_;
  // Stdin events for the stream, from whichever thread read stdin.
  std::vector<redis::Outgoing> group_inbox_;   // guarded by mu_
  // Interrupts this relay read from stdin and whose decision it must print
  // and send to reply_to: interrupt_id -> reply_to. Bounded by the pending
  // table (entries leave with their decision).
  std::unordered_map<std::string, std::string> origin_;  // guarded by mu_
  uint64_t next_interrupt_ = 1;                           // guarded by mu_
  std::string last_interrupt_id_;                         // guarded by mu_
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

// ------------------------------------------------------------ stdin thread

bool Relay::ingest_buffered_locked(std::vector<Outgoing>* out) {
  ndjson::LineReader::Line line;
  for (;;) {
    if (held_interrupt_) return false;  // --audit: nothing overtakes it
    auto st = stdin_reader_.next(&line);
    if (st == ndjson::LineReader::Status::kLine) {
      if (group_enabled()) {
        // The group numbers and broadcasts it: to the stream, not to clients.
        IngestResult r = hub_.check(line.text, wall_now(), line.number);
        if (r.ok()) {
          redis::Outgoing o;
          o.event = *r.payload;
          if (r.type == "interrupt") {
            o.kind = 'i';
            o.key = last_interrupt_id_;
          } else if (r.type == "state_change" && r.machine) {
            o.kind = 'm';
            o.key = *r.machine;
            auto dom = nlohmann::json::parse(o.event, nullptr, false);
            if (auto state = dom.is_object() ? dom.find("state") : dom.end(); state != dom.end()) {
              o.state = state->dump();
            }
          }
          group_inbox_.push_back(std::move(o));
        } else if (!r.error.empty()) {
          log::warn("stdin " + r.error);
        }
        continue;
      }
      IngestResult r = hub_.ingest(line.text, wall_now(), line.number);
      if (r.status == IngestResult::Status::kHeld) {
        held_interrupt_->line = line.number;
        return false;
      }
      if (r.ok()) {
        out->push_back(Outgoing{net::make_text_frame(*r.payload), std::move(r.type),
                                std::move(r.machine)});
      } else if (!r.error.empty()) {
        log::warn("stdin " + r.error);
      }
    } else if (st == ndjson::LineReader::Status::kTooLong) {
      log::warn("stdin line " + std::to_string(line.number) + ": longer than " +
                std::to_string(kMaxStdinLine) + " bytes; skipped");
    } else {
      return st == ndjson::LineReader::Status::kEof;
    }
  }
}

void Relay::read_stdin(int stop_fd) {
  for (;;) {
    bool eof, posted, held;
    {
      // Held across the lines of one read(2) (next() never blocks).
      std::lock_guard<std::mutex> lock(mu_);
      size_t before = inbox_.size() + group_inbox_.size();
      eof = ingest_buffered_locked(&inbox_);
      posted = inbox_.size() + group_inbox_.size() > before;
      if (eof) stdin_eof_ = true;
      held = held_interrupt_.has_value();  // only this thread sets it
    }
    // One wake-up per read(2), so a burst costs one, not one per line.
    if (posted || eof) server_->wake();
    if (eof) return;
    if (held) {
      // Then the lines read before the hold, before reading more.
      if (!wait_while_held(stop_fd)) return;
      continue;
    }
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0) {
      if (errno != EINTR) break;
    }
    if (fds[1].revents) return;
    if (stdin_reader_.fill() == ndjson::LineReader::Fill::kError) {
      log::error("reading stdin: " + log::errno_text(stdin_reader_.error()));
      std::lock_guard<std::mutex> lock(mu_);
      stdin_eof_ = true;
      server_->wake();
      return;
    }
  }
}

bool Relay::wait_while_held(int stop_fd) {
  std::unique_lock<std::mutex> lock(mu_);
  while (held_interrupt_) {
    // Bounded, so that a stop request is seen while the record is written.
    stdin_resume_.wait_for(lock, std::chrono::milliseconds(200));
    pollfd stop{stop_fd, POLLIN, 0};
    if (::poll(&stop, 1, 0) > 0) return false;
  }
  return true;
}

void Relay::read_stdin_on_loop() {
  stdin_on_loop_ = true;
  // Level-triggered and readable: this read(2) does not block.
  bool failed = stdin_reader_.fill() == ndjson::LineReader::Fill::kError;
  if (failed) log::error("reading stdin: " + log::errno_text(stdin_reader_.error()));
  std::vector<Outgoing> frames;
  bool eof, held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    eof = ingest_buffered_locked(&frames) || failed;
    if (eof) stdin_eof_ = true;
    held = held_interrupt_.has_value();
  }
  for (const Outgoing& f : frames) fan_out(f);
  push_to_group();
  if (eof) {
    server_->unwatch(STDIN_FILENO);
    on_stdin_eof();
  } else if (held) {
    // Read on once the interrupt is published or refused (handle_audit_outcomes).
    server_->unwatch(STDIN_FILENO);
  }
}

void Relay::continue_stdin_on_loop() {
  std::vector<Outgoing> frames;
  bool eof, held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stdin_eof_) return;
    eof = ingest_buffered_locked(&frames);
    if (eof) stdin_eof_ = true;
    held = held_interrupt_.has_value();
  }
  for (const Outgoing& f : frames) fan_out(f);
  if (eof) {
    on_stdin_eof();
  } else if (!held && !server_->watch(STDIN_FILENO, [this] { read_stdin_on_loop(); })) {
    log::error("stdin: cannot watch it again; no more events are read");
  }
}

void Relay::push_to_group() {
  if (!group_) return;
  std::vector<redis::Outgoing> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events.swap(group_inbox_);
  }
  if (events.empty()) return;
  for (redis::Outgoing& o : events) group_->append(std::move(o));
  // One script call for what one read(2) brought (or more, while a batch
  // is in flight).
  group_->flush();
}

RelayHub::Intercept Relay::on_interrupt(std::string_view event) {
  // Called by hub_.ingest on the stdin thread, mu_ held.
  RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  HitlInterruptResult r = audit_ ? hitl_.prepare_interrupt(std::move(parsed))
                                 : hitl_.on_interrupt(std::move(parsed), mono_now());
  if (!r.ok) {
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  out.replacement = r.event.dump();
  if (audit_) {
    // Pending and broadcast once recorded (handle_audit_outcomes); the
    // caller reads no further line meanwhile.
    out.hold = true;
    held_interrupt_ = HeldInterrupt{r.event, 0};
    record(r.event, kHeldInterrupt);
  }
  return out;
}

RelayHub::Intercept Relay::on_group_interrupt(std::string_view event) {
  // mu_ held, on whichever thread reads stdin. The interrupt becomes
  // pending on every relay (this one included) when it comes back through
  // the stream; here it is only checked and given a group-unique id.
  RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  if (parsed.is_object() && (!parsed.contains("interrupt_id") || parsed["interrupt_id"].is_null())) {
    parsed["interrupt_id"] = "i-" + relay_id_ + "-" + std::to_string(next_interrupt_++);
  }
  HitlTable scratch(HitlOptions{options_.hitl_timeout, kHitlMaxPending});
  HitlInterruptResult r = scratch.on_interrupt(std::move(parsed), mono_now());
  if (r.ok && hitl_.is_pending(r.event["interrupt_id"].get<std::string>())) {
    r.ok = false;
    r.error = "interrupt_id \"" + r.event["interrupt_id"].get<std::string>() + "\" is already pending";
  }
  if (!r.ok) {
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  last_interrupt_id_ = r.event["interrupt_id"].get<std::string>();
  auto reply_to = r.event.find("reply_to");
  origin_[last_interrupt_id_] =
      reply_to != r.event.end() && reply_to->is_string() ? reply_to->get<std::string>() : "";
  out.replacement = r.event.dump();
  return out;
}

// ------------------------------------------------------------ loop thread

void Relay::drain_inbox_locked(std::vector<Outgoing>* out) {
  out->swap(inbox_);
}

void Relay::fan_out(const Outgoing& out) {
  const size_t clients = subs_.size();
  if (subs_.everyone_gets(out.type)) {
    // The unfiltered path, unchanged: one pass over the open clients.
    server_->broadcast(out.frame);
    return;
  }
  recipients_.clear();
  subs_.select(out.type, out.machine ? &*out.machine : nullptr, &recipients_);
  for (SubscriberId id : recipients_) server_->send(id, out.frame);
  filtered_out_ += clients - recipients_.size();
}

void Relay::on_wake() {
  std::vector<Outgoing> frames;
  bool eof;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_inbox_locked(&frames);
    eof = stdin_eof_;
  }
  for (const Outgoing& f : frames) fan_out(f);
  push_to_group();
  handle_audit_outcomes();
  if (eof) on_stdin_eof();
}

void Relay::record(nlohmann::json record, uint64_t ticket) {
  output_.record(std::move(record), [this, ticket](const std::string& error) {
    // On the output thread: post, then wake the loop (never act here).
    {
      std::lock_guard<std::mutex> lock(mu_);
      audit_outcomes_.push_back(AuditOutcome{ticket, error});
    }
    server_->wake();
  });
}

void Relay::record_then_deliver(HitlResolution resolution, std::optional<net::ClientId> client,
                                bool group) {
  const uint64_t ticket = next_ticket_++;
  nlohmann::json decision = resolution.decision;
  in_flight_.emplace(ticket, InFlight{std::move(resolution), client, group});
  record(std::move(decision), ticket);
}

void Relay::handle_audit_outcomes() {
  bool resume_stdin = false;
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<AuditOutcome> outcomes;
  outcomes.swap(audit_outcomes_);
  for (AuditOutcome& o : outcomes) {
    if (o.error.empty()) {
      audit_error_.clear();
    } else {
      audit_error_ = o.error;
      ++audit_failures_;
    }
    if (o.ticket == kHeldInterrupt) {
      HeldInterrupt held = std::move(*held_interrupt_);
      held_interrupt_.reset();
      resume_stdin = true;
      if (!o.error.empty()) {
        // Refused like any bad stdin line: neither pending nor broadcast.
        log::warn("stdin line " + std::to_string(held.line) + ": interrupt " +
                  held.event["interrupt_id"].dump() + ": not recorded (" + o.error + "); refused");
        continue;
      }
      std::string text = held.event.dump();
      HitlInterruptResult r = hitl_.on_interrupt(std::move(held.event), mono_now());
      if (!r.ok) {  // cannot happen: nothing was added since prepare_interrupt
        log::error("stdin line " + std::to_string(held.line) + ": interrupt: " + r.error);
        continue;
      }
      std::optional<std::string> machine;
      if (auto m = r.event.find("machine_id"); m != r.event.end() && m->is_string()) {
        machine = m->get<std::string>();
      }
      Payload p = hub_.publish(text, wall_now());
      if (p) fan_out(Outgoing{net::make_text_frame(*p), "interrupt", std::move(machine)});
      continue;
    }
    auto it = in_flight_.find(o.ticket);
    if (it == in_flight_.end()) continue;
    InFlight f = std::move(it->second);
    in_flight_.erase(it);
    if (f.group) {
      // Decided by the group and broadcast already; the origin's stdout
      // and the waiting sm-send get it once it is recorded here.
      if (!o.error.empty()) {
        group_records_to_retry_.push_back(std::move(f.resolution));
        continue;
      }
      std::string text = f.resolution.decision.dump();
      output_.line(text + "\n");
      if (!f.resolution.reply_to.empty()) {
        std::string err = send_reply_datagram(f.resolution.reply_to, text);
        if (!err.empty()) log::warn(err);
      }
      continue;
    }
    const std::string id = f.resolution.decision["interrupt_id"].get<std::string>();
    if (o.error.empty()) {
      if (hitl_.commit(id)) deliver(f.resolution);
      continue;
    }
    // Not recorded: pending again as before. A timeout is retried by the
    // next tick (its deadline has passed); a human's decision is refused.
    hitl_.abort(id);
    if (f.client) {
      nlohmann::json e = {{"type", "error"},
                          {"error", "the decision could not be recorded: " + o.error +
                                        "; it is still pending"},
                          {"interrupt_id", id},
                          {"reason", "audit failed"}};
      server_->send_text(*f.client, e.dump());
    }
  }
  lock.unlock();
  if (!resume_stdin) return;
  if (stdin_on_loop_) {
    continue_stdin_on_loop();
  } else {
    stdin_resume_.notify_all();
  }
}

void Relay::on_stdin_eof() {
  if (!eof_handled_) {
    eof_handled_ = true;
    if (options_.exit_on_eof && group_) {
      // The buffered events must reach the group first (on_tick checks).
      log::note(1, "stdin ended: appending what is buffered, then exiting");
      draining_for_exit_ = true;
    } else if (options_.exit_on_eof) {
      log::note(1, "stdin ended: draining clients (up to " +
                       duration_text(options_.drain_timeout) + "), then exiting");
      server_->begin_shutdown(options_.drain_timeout);
    } else {
      log::note(1, "stdin ended: still serving the last state (--exit-on-eof to exit)");
    }
  }
}

void Relay::on_open(const net::ClientInfo& client) {
  peers_[client.id] = client.peer;
  std::optional<uint64_t> since;
  if (const std::string* s = client.request.query_param("since"); s && seq_) {
    since = RelayHub::parse_since(*s);
    if (!since) log::note(1, "client " + client.peer + ": ignoring since=" + *s);
  }
  // Its filter: the route's (or none), with the query's keys replacing the
  // route's. A bad query filter is answered with an error and the client
  // keeps the default view: nothing else changes.
  Filter base;
  if (auto route = routes_.find(client.request.path); route != routes_.end()) {
    base = route->second;
  }
  Waiting w{client.id, client.peer, since, {}, Status::Ok()};
  w.bad = filter_from_query(client.request.query, base, &w.filter);
  if (!serving_) {
    // A group relay before its first load: it joins (and gets its first
    // messages) in on_loaded, before any event of the group.
    waiting_.push_back(std::move(w));
    return;
  }
  greet(w);
}

void Relay::greet(const Waiting& w) {
  const Filter& filter = w.filter;
  std::vector<Outgoing> earlier;
  std::vector<Payload> first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_inbox_locked(&earlier);
    first = hub_.on_connect(w.since, wall_now(), filter == Filter{} ? nullptr : &filter);
  }
  // Events older than the snapshot go to the clients already there; then
  // the new client joins the index and the broadcast list with its first
  // messages (a filter error, snapshot/history) ahead of the live stream, so
  // it gets every event exactly once.
  for (const Outgoing& f : earlier) fan_out(f);
  subs_.set(w.id, filter);
  std::vector<net::Frame> frames;
  frames.reserve(first.size() + 1);
  if (!w.bad.ok()) {
    log::note(1, "client " + w.peer + ": " + w.bad.message);
    frames.push_back(net::make_text_frame(filter_error_message(w.bad)));
  }
  for (const Payload& p : first) frames.push_back(net::make_text_frame(*p));
  server_->join(w.id, frames);
}

// What a header from a peer may show in our log: printable ASCII, bounded.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) {
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (text.size() > 200) out += "...";
  return out;
}

// Each refusal is logged by default, naming what would let the client in:
// the browser does not show a 403's body, so the operator must see it here.
// A client retrying in a loop gets a line per address per refusal_log_
// interval, which counts the others.
void Relay::on_refused(const net::RefusedUpgrade& r) {
  uint64_t since = 0;
  if (!refusal_log_.should_log(net::address_of_peer(r.peer), mono_now(), &since)) return;
  std::string line = std::string(r.request ? "refused a WebSocket from " : "refused a connection from ") +
                     r.peer + ": " + std::to_string(r.status) + " ";
  switch (r.reason) {
    case net::RefusalReason::kOrigin: {
      std::string origin = printable(*r.request->header("origin"));
      line += "origin " + origin + " is not allowed; to allow it: --allow-origin " + origin;
      // With no --allow-origin the same-host default is in force, and a list
      // replaces it: the advice must keep this relay's own page (/) allowed.
      if (options_.allow_origin.empty()) {
        const std::string* host = r.request->header("host");
        if (host && !host->empty()) {
          line += std::string(" --allow-origin ") + (options_.tls_cert.empty() ? "http://" : "https://") +
                  printable(*host) + " (a list replaces the same-host default; the second keeps this relay's page)";
        } else {
          line += " and --allow-origin for this relay's own page (a list replaces the same-host default)";
        }
      }
      break;
    }
    case net::RefusalReason::kToken:
      line += r.token_sent ? "wrong token" : "no token";
      line += "; the client must send the relay's --token (Authorization: Bearer or ?token=)";
      break;
    case net::RefusalReason::kMaxClients:
      line += std::to_string(options_.max_clients) +
              " clients are connected; to allow more: --max-clients N";
      break;
    case net::RefusalReason::kShuttingDown:
      line += "the relay is shutting down";
      break;
    case net::RefusalReason::kBadUpgrade:
      line += "not a valid WebSocket upgrade: " + printable(r.message);
      break;
    case net::RefusalReason::kNotTls:
      line += "plain HTTP on the TLS port (--tls-cert); the client must use https:// or wss://";
      break;
  }
  if (since > 0) line += " (" + std::to_string(since) + " more refused from this address since)";
  log::warn(line);
}

void Relay::on_message(net::ClientId id, std::string_view payload, bool binary) {
  // The protocol is JSON text; a binary message (whose bytes need not even
  // be UTF-8) gets an error reply like any other message that is not JSON.
  if (binary) {
    server_->send_text(id, protocol::error_message("binary messages are not supported: send JSON as text"));
    return;
  }
  // One client's message must never take the relay down: a surprise from
  // the JSON or HITL code is reported to that client and on stderr.
  try {
    handle_message(id, payload);
  } catch (const std::exception& e) {
    log::error("message from client " + std::to_string(id) + ": " + e.what());
    server_->send_text(id, protocol::error_message("internal error"));
  }
}

void Relay::handle_message(net::ClientId id, std::string_view payload) {
  ClientMessage m = RelayHub::classify_client_message(payload);
  switch (m.kind) {
    case ClientMessage::Kind::kRefresh: {
      Payload snap;
      const Filter* filter = subs_.find(id);
      {
        std::lock_guard<std::mutex> lock(mu_);
        snap = hub_.snapshot(wall_now(), filter);
      }
      // Held to --max-queue: a client asking for snapshots it never reads
      // is a slow client, not a way to grow our memory.
      server_->send(id, net::make_text_frame(*snap));
      return;
    }
    case ClientMessage::Kind::kPong:
      server_->note_pong(id);
      return;
    case ClientMessage::Kind::kSubscribe:
      subscribe(id, m.json);
      return;
    case ClientMessage::Kind::kForward:
      output_.line(std::move(m.line));
      return;
    case ClientMessage::Kind::kError:
      server_->send_text(id, m.reply);
      return;
    case ClientMessage::Kind::kDecision: {
      std::string peer = peers_.count(id) ? peers_[id] : std::string();
      if (group_) {
        // Checked here, decided by the group: the first valid decision in
        // Redis wins and comes back through the stream to every relay.
        HitlDecisionResult r;
        {
          std::lock_guard<std::mutex> lock(mu_);
          r = hitl_.on_decision(m.json, peer, mono_now(), /*resolve=*/false);
        }
        if (!r.accepted()) {
          server_->send_text(id, r.error.dump());
          return;
        }
        std::string interrupt_id = r.resolved->decision["interrupt_id"].get<std::string>();
        group_->decide(interrupt_id, r.resolved->decision.dump(),
                       [this, id, interrupt_id](redis::DecideOutcome outcome) {
                         if (outcome == redis::DecideOutcome::kWon) {
                           // Still pending here: the tail has not shown it yet.
                           bool unseen;
                           {
                             std::lock_guard<std::mutex> lock(mu_);
                             unseen = hitl_.is_pending(interrupt_id);
                           }
                           if (unseen) won_unseen_[interrupt_id] = id;
                           return;
                         }
                         nlohmann::json e = {{"type", "error"}, {"interrupt_id", interrupt_id}};
                         if (outcome == redis::DecideOutcome::kNotPending) {
                           e["error"] = "not pending";
                           e["reason"] = "already decided";
                         } else {
                           ++decisions_unavailable_;
                           e["error"] = "the decision could not be recorded: redis is unavailable; "
                                        "send it again";
                         }
                         server_->send_text(id, e.dump());
                       });
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (audit_) {
        // Recorded first, delivered when the record is fsynced.
        HitlDecisionResult r = hitl_.begin_decision(m.json, peer, mono_now());
        if (!r.accepted()) {
          server_->send_text(id, r.error.dump());
          return;
        }
        record_then_deliver(std::move(*r.resolved), id);
        return;
      }
      HitlDecisionResult r = hitl_.on_decision(m.json, peer, mono_now());
      if (!r.accepted()) {
        server_->send_text(id, r.error.dump());
        return;
      }
      deliver(*r.resolved);
      return;
    }
  }
}

void Relay::subscribe(net::ClientId id, const nlohmann::json& message) {
  const Filter* current = subs_.find(id);
  if (!current) return;  // not open (closing)
  Filter filter = *current;
  Status s = apply_subscribe(message, &filter);
  if (!s.ok()) {
    server_->send_text(id, filter_error_message(s));
    return;
  }
  std::vector<Outgoing> earlier;
  std::vector<Payload> view;
  {
    // As in on_open: what the stdin thread posted before the view was taken
    // goes out under the old filter first, so every event reaches the
    // client once (in the view or live after it).
    std::lock_guard<std::mutex> lock(mu_);
    drain_inbox_locked(&earlier);
    view = hub_.on_subscribe(filter, wall_now());
  }
  for (const Outgoing& f : earlier) fan_out(f);
  subs_.set(id, std::move(filter));
  // Held to --max-queue like a refresh: a client re-subscribing without
  // reading is a slow client, not a way to grow our memory.
  for (const Payload& p : view) server_->send(id, net::make_text_frame(*p));
}

void Relay::deliver(const HitlResolution& resolution) {
  std::string text = resolution.decision.dump();
  Payload p = hub_.publish(text, wall_now());
  fan_out(Outgoing{net::make_text_frame(*p), "decision", std::nullopt});
  output_.line(text + "\n");
  if (!resolution.reply_to.empty()) {
    std::string err = send_reply_datagram(resolution.reply_to, text);
    if (!err.empty()) log::warn(err);
  }
}

void Relay::on_tick() {
  double now = mono_now();
  // "connections": a summary may count plain HTTP on the TLS port too.
  for (const net::RefusalSummary& s : refusal_log_.take_due(now)) {
    std::string from = !s.address.empty() ? s.address
                       : std::to_string(s.addresses) + (s.addresses == 1 ? " address" : " addresses") +
                             " no longer tracked";
    log::warn("refused " + std::to_string(s.refused) + " more connections from " + from +
              " (counted in /metrics: ws_relay_handshakes_refused_total)");
  }
  if (group_) {
    group_->on_tick(now);
    if (!group_records_to_retry_.empty()) {
      std::vector<HitlResolution> retry;
      retry.swap(group_records_to_retry_);
      for (HitlResolution& r : retry) record_then_deliver(std::move(r), std::nullopt, /*group=*/true);
    }
    if (!serving_ && (group_->stats().reconnects > 0 || now - started_ > kGroupStartWait)) {
      log::warn("redis: serving without the group's state until Redis is reachable");
      serving_ = true;
      for (const Waiting& w : waiting_) greet(w);
      waiting_.clear();
    }
    std::vector<HitlResolution> expired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto next = hitl_.next_deadline(); next && *next <= now) expired = hitl_.expire(now);
    }
    // A timeout is resolved once for the group: every relay proposes it,
    // the decide script lets the first one in.
    for (const HitlResolution& r : expired) {
      std::string interrupt_id = r.decision["interrupt_id"].get<std::string>();
      std::string text = r.decision.dump();
      group_->decide(interrupt_id, text, [this, interrupt_id, text](redis::DecideOutcome o) {
        if (o == redis::DecideOutcome::kUnavailable) timeouts_to_retry_.emplace_back(interrupt_id, text);
      });
    }
    if (draining_for_exit_ && group_->stats().buffered == 0) {
      draining_for_exit_ = false;
      log::note(1, "stdin ended: draining clients (up to " + duration_text(options_.drain_timeout) + "), then exiting");
      server_->begin_shutdown(options_.drain_timeout);
    }
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto next = hitl_.next_deadline(); next && *next <= now) {
    if (!audit_) {
      for (const HitlResolution& r : hitl_.expire(now)) deliver(r);
      return;
    }
    // A timeout whose record fails is pending again and due: retried here,
    // on the next tick, until it is recorded (and then resolved once).
    for (HitlResolution& r : hitl_.begin_expire(now)) record_then_deliver(std::move(r), std::nullopt);
  }
}

// ------------------------------------------------------------ the group (--redis)

void Relay::on_loaded(const redis::GroupSnapshot& snap, bool first) {
  const double now = wall_now();
  const bool new_epoch = !group_epoch_.empty() && snap.epoch != group_epoch_;
  group_epoch_ = snap.epoch;
  uint64_t old_last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old_last = hub_.last_seq();
    hub_ = make_hub();
    // The held events first, then the stored machines, which are the
    // table's state at snap.last_seq (the replay of recent events may
    // lack machines whose last change is older).
    for (const auto& e : snap.recent) hub_.apply(e.seq, e.event, now);
    for (const std::string& m : redis::machine_replay(snap)) hub_.table(m, now);
    hub_.set_last_seq(snap.last_seq);
    hitl_ = HitlTable(HitlOptions{options_.hitl_timeout, kHitlMaxPending});
    std::unordered_map<std::string, std::string> still_ours;
    for (const redis::GroupSnapshot::Pending& p : snap.pending) {
      auto event = nlohmann::json::parse(p.event, nullptr, false);
      // Its deadline counts from when it was appended, not from this load.
      HitlInterruptResult r = hitl_.on_interrupt(std::move(event), mono_now() - p.age_s);
      if (!r.ok) continue;
      std::string id = r.event["interrupt_id"].get<std::string>();
      if (auto it = origin_.find(id); it != origin_.end()) still_ours.emplace(id, it->second);
    }
    // Stdin interrupts not yet appended stay ours too.
    for (const redis::Outgoing& o : group_inbox_)
      if (o.kind == 'i' && origin_.count(o.key)) still_ours.emplace(o.key, origin_[o.key]);
    origin_.swap(still_ours);
  }
  log::note(1, "redis: loaded the group's state: epoch " + snap.epoch + ", seq " +
                   std::to_string(snap.last_seq) + ", " + std::to_string(snap.machines.size()) +
                   " machines, " + std::to_string(snap.pending.size()) + " pending");
  if (!serving_) {
    serving_ = true;
    for (const Waiting& w : waiting_) greet(w);
    waiting_.clear();
    return;
  }
  // Serving began before this first load (Redis was unreachable at start)
  // and nothing was shown yet: nothing to correct unless the group has state.
  if (first && old_last == 0 && snap.last_seq == 0) return;
  // Decisions that won in Redis but never reached the tail. With the same
  // epoch and the interrupt no longer pending they were only trimmed
  // before we read them (decided all the same); otherwise Redis lost them
  // (restarted without its data, or from an older append-only file), and
  // their clients must decide again.
  for (const auto& [interrupt_id, client] : won_unseen_) {
    bool pending_again;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_again = hitl_.is_pending(interrupt_id);
    }
    if (!new_epoch && !pending_again) continue;
    ++decisions_lost_;
    log::warn("redis: the decision for " + interrupt_id +
              " was lost with Redis's data; its client was told to decide again");
    server_->send_text(client, nlohmann::json{{"type", "error"},
                                              {"interrupt_id", interrupt_id},
                                              {"error", "the decision was lost: redis lost its data; "
                                                        "decide again if it is still pending"}}
                                   .dump());
  }
  won_unseen_.clear();
  // A resync: what the clients hold may be missing events (trimmed past us)
  // or belong to another epoch. Tell them, then give everyone the group's
  // state now.
  nlohmann::json gap = {{"type", "gap"}, {"reason", "resync"}, {"epoch", snap.epoch}};
  if (snap.last_seq > old_last) {
    gap["from"] = old_last + 1;
    gap["to"] = snap.last_seq;
  }
  server_->broadcast(net::make_text_frame(gap.dump()));
  std::lock_guard<std::mutex> lock(mu_);
  if (subs_.filtered() == 0) {
    server_->broadcast(net::make_text_frame(*hub_.snapshot(now)));
    return;
  }
  for (const auto& [id, peer] : peers_) {
    server_->send(id, net::make_text_frame(*hub_.snapshot(now, subs_.find(id))));
  }
}

void Relay::on_entries(const std::vector<redis::GroupSnapshot::Entry>& entries) {
  const double now = wall_now();
  std::vector<Outgoing> out;
  out.reserve(entries.size());
  struct Reply {
    std::string to, text;
  };
  std::vector<Reply> replies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : entries) {
      // Type and machine choose the audience (subscriptions); the hub's
      // scan finds them without a DOM. The events were checked by the
      // relay that appended them. Only HITL messages, which also change
      // the pending table, are parsed.
      RelayHub::Applied applied;
      Payload p = hub_.apply(e.seq, e.event, now, &applied);
      if (!p) continue;
      if (applied.type == "interrupt" || applied.type == "decision") {
        auto dom = nlohmann::json::parse(e.event, nullptr, false);
        auto id_it = dom.is_object() ? dom.find("interrupt_id") : dom.end();
        const std::string id =
            id_it != dom.end() && id_it->is_string() ? id_it->get<std::string>() : "";
        if (applied.type == "interrupt" && !id.empty()) {
          HitlInterruptResult r = hitl_.on_interrupt(dom, mono_now());
          if (r.ok && origin_.count(id)) record(r.event, 0);
        } else if (applied.type == "decision" && !id.empty()) {
          hitl_.resolve_elsewhere(id, dom.value("timed_out", false));
          won_unseen_.erase(id);
          if (auto it = origin_.find(id); it != origin_.end()) {
            // The relay that read the interrupt prints the decision and
            // answers the waiting sm-send on its host; with --audit, once
            // its record is fsynced here.
            if (audit_) {
              record_then_deliver(HitlResolution{dom, it->second}, std::nullopt, /*group=*/true);
            } else {
              output_.line(e.event + "\n");
              if (!it->second.empty()) replies.push_back({it->second, e.event});
            }
            origin_.erase(it);
          }
        }
      }
      out.push_back(Outgoing{net::make_text_frame(*p), std::move(applied.type),
                             std::move(applied.machine)});
    }
  }
  for (const Outgoing& o : out) fan_out(o);
  for (const Reply& r : replies) {
    std::string err = send_reply_datagram(r.to, r.text);
    if (!err.empty()) log::warn(err);
  }
}

void Relay::on_link(bool up) {
  if (!up) return;
  std::vector<std::pair<std::string, std::string>> retry;
  retry.swap(timeouts_to_retry_);
  for (auto& [id, text] : retry) {
    std::string i = id, t = text;
    group_->decide(i, t, [this, i, t](redis::DecideOutcome o) {
      if (o == redis::DecideOutcome::kUnavailable) timeouts_to_retry_.emplace_back(i, t);
    });
  }
}

std::string Relay::healthz_text() {
  const net::ServerStats& s = server_->stats();
  uint64_t events_in;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_in = hub_.events_in();
  }
  nlohmann::json j = {{"status", "ok"},
                      {"clients", s.clients},
                      {"events_in", events_in},
                      {"messages_out", s.messages_out},
                      {"dropped", s.dropped},
                      {"subscribed", subs_.filtered()},
                      {"filtered_out", filtered_out_},
                      {"uptime_s", static_cast<uint64_t>(mono_now() - started_)}};
  nlohmann::json reasons = nlohmann::json::array();
  if (group_) {
    j["relay_id"] = relay_id_;
    j["redis"] = group_->up() ? "up" : "down";
    if (!group_->up()) reasons.push_back("redis: " + group_->down_reason());
  }
  if (audit_) {
    // Degraded from the first record refused until the next one is written.
    j["audit"] = audit_error_.empty() ? "ok" : "failing";
    if (!audit_error_.empty()) reasons.push_back("audit: " + audit_error_);
  }
  if (!reasons.empty()) {
    j["status"] = "degraded";
    j["reasons"] = std::move(reasons);
  }
  return j.dump();
}

std::string Relay::metrics_text() {
  const net::ServerStats& s = server_->stats();
  uint64_t events_in, invalid, last_seq, machines, mh_evictions, evicted;
  size_t pending, mh_machines, mh_bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_in = hub_.events_in();
    invalid = hub_.invalid_lines();
    last_seq = hub_.last_seq();
    machines = hub_.machines();
    evicted = hub_.machines_evicted();
    pending = hitl_.pending_count();
    mh_evictions = hub_.machine_history().evictions();
    mh_machines = hub_.machine_history().machines();
    mh_bytes = hub_.machine_history().bytes();
  }
  PrometheusText out;
  out.gauge("ws_relay_clients", "Connected WebSocket clients.", s.clients);
  out.gauge("ws_relay_tcp_connections", "TCP connections held (handshaking, open, closing), this request's included.",
         s.tcp_connections);
  out.counter("ws_relay_events_in_total", "Valid events read from stdin.", events_in);
  out.counter("ws_relay_invalid_lines_total", "Stdin lines skipped as invalid.", invalid);
  out.counter("ws_relay_messages_out_total", "Messages written to clients.", s.messages_out);
  out.counter("ws_relay_bytes_out_total", "WebSocket bytes written to clients.", s.bytes_out);
  out.counter("ws_relay_messages_in_total", "Messages received from clients.", s.messages_in);
  out.counter("ws_relay_dropped_total", "Messages dropped for slow clients (--slow-client drop).",
         s.dropped);
  out.counter("ws_relay_slow_client_closes_total", "Clients closed with 1013 for a full queue.",
         s.slow_client_closes);
  out.counter("ws_relay_ping_timeouts_total", "Clients closed with 1008 for unanswered pings.",
         s.ping_timeouts);
  out.counter("ws_relay_protocol_errors_total", "Clients closed with 1002/1007/1009.",
         s.protocol_errors);
  out.counter("ws_relay_connections_total", "WebSocket handshakes completed.",
         s.connections_total);
  PrometheusText::Samples refused;
  for (size_t i = 0; i < net::kRefusalReasons; ++i) {
    refused.emplace_back(net::refusal_reason_name(static_cast<net::RefusalReason>(i)),
                         s.refused_by_reason[i]);
  }
  out.counter("ws_relay_handshakes_refused_total",
              "WebSocket upgrades refused (4xx/5xx), by reason.", "reason", refused);
  PrometheusText::Samples statuses;
  for (const auto& [status, count] : s.http_status) {
    statuses.emplace_back(std::to_string(status), count);
  }
  out.counter("ws_relay_http_requests_total",
              "HTTP requests answered, by status (101: WebSocket upgrades).", "status", statuses);
  out.counter("ws_relay_writes_refused_total",
              "Writes to a client's socket that stopped at a full buffer (once per stall, not per event).",
              s.writes_refused);
  out.counter("ws_relay_stderr_dropped_total",
              "Diagnostic lines not written: stderr was not being read.", log::dropped_lines());
  out.counter("ws_relay_stdout_dropped_total",
              "Lines (client messages, decisions) not printed: stdout was not being read.",
              output_.dropped());
  out.counter("ws_relay_accepts_shed_total", "TCP connections closed at accept: too many still in their handshake.", s.accepts_shed);
  out.gauge("ws_relay_last_seq", "Last seq given (--seq).", last_seq);
  out.gauge("ws_relay_machines", "Machines in the snapshot table.", machines);
  out.counter("ws_relay_machines_evicted_total",
              "Machines forgotten by the snapshot table at its bound, least recently active first.",
              evicted);
  out.gauge("ws_relay_hitl_pending", "Interrupts waiting for a decision.", pending);
  if (audit_) {
    out.gauge("ws_relay_audit_ok", "1 while the --audit file takes records (0 from a refused record until one is written).",
              audit_error_.empty() ? 1 : 0);
    out.counter("ws_relay_audit_failures_total",
                "Records the --audit file refused (each refused decision or timeout attempt counts).",
                audit_failures_);
  }
  out.gauge("ws_relay_subscriptions", "Clients with a type or machine filter (?type=, ?machine=, --route, subscribe).",
         subs_.filtered());
  out.counter("ws_relay_filtered_out_total", "Deliveries not made because a client's filter did not match the event.", filtered_out_);
  out.gauge("ws_relay_machine_history_machines", "Machines with events held by --machine-history.", mh_machines);
  out.gauge("ws_relay_machine_history_bytes", "Bytes held by --machine-history (bounded by --machine-history-bytes).", mh_bytes);
  out.counter("ws_relay_machine_history_evictions_total", "Machines whose held history was dropped for --machine-history-bytes, least recently "
         "active first.",
         mh_evictions);
  out.gauge("ws_relay_uptime_seconds", "Seconds since start.", mono_now() - started_);
  if (group_) {
    const redis::StreamStats g = group_->stats();
    out.gauge("ws_relay_redis_up", "1 while the Redis link is up (loaded and tailing).",
              group_->up() ? 1 : 0);
    out.counter("ws_relay_redis_appended_total", "Stdin events appended to the group's stream.",
                g.appended);
    out.counter("ws_relay_redis_append_batches_total", "Append script calls acknowledged.",
                g.append_batches);
    out.counter("ws_relay_redis_duplicate_batches_total",
                "Resent batches Redis had already appended (dropped there).", g.duplicates);
    out.counter("ws_relay_redis_append_waits_total",
                "Appends held until the tails (this relay's, the slowest reported) had read "
                "half the history.",
                g.append_waits);
    out.counter("ws_relay_redis_tailed_total", "Stream entries read by the tail.", g.tailed);
    out.gauge("ws_relay_redis_buffered", "Stdin events waiting for Redis.", g.buffered);
    out.counter("ws_relay_redis_buffer_dropped_total",
                "Stdin events dropped: --redis-buffer was full while Redis was away.",
                g.buffer_dropped);
    out.counter("ws_relay_redis_reconnects_total", "Reconnection attempts to Redis.", g.reconnects);
    out.counter("ws_relay_redis_resyncs_total",
                "Reloads of the group's state after a hole in the stream or a new epoch.", g.resyncs);
    out.counter("ws_relay_redis_auth_failures_total", "AUTH refused by Redis.", g.auth_failures);
    out.counter("ws_relay_redis_decisions_unavailable_total",
                "Client decisions answered 'redis is unavailable' (not recorded).",
                decisions_unavailable_);
    out.counter("ws_relay_redis_decisions_lost_total",
                "Client decisions that won in Redis and were lost with its data before the "
                "tail read them (the client is told).",
                decisions_lost_);
  }
  return out.text();
}

void Relay::attach(net::WsServer* server) {
  server_ = server;
  server->route("/healthz", [this](const net::HttpRequest&) {
    // 503 while Redis is away, so a load balancer sends new clients to a
    // relay of the group that has it.
    net::HttpReply r = net::text_reply(group_ && !group_->up() ? 503 : 200, healthz_text());
    r.content_type = "application/json";
    return r;
  });
  server->route(
      "/metrics",
      [this](const net::HttpRequest&) {
        net::HttpReply r;
        r.content_type = PrometheusText::kContentType;
        r.body = metrics_text();
        return r;
      },
      net::RouteAccess::kToken);
  // The dashboard: the page is the way in to the data, so it needs the
  // token like /metrics; its script, stylesheet and icon hold no data and a
  // browser fetches them without the token the page's URL carries.
  server->route(
      "/",
      [this](const net::HttpRequest& request) {
        return net::dashboard_page(request, options_.path);
      },
      net::RouteAccess::kToken);
  for (size_t i = 0; i < web::asset_count(); ++i) {
    std::string_view name = web::asset_at(i).name;
    if (name == "index.html") continue;  // only served at "/"
    server->route("/" + std::string(name), [](const net::HttpRequest& request) {
      return *net::dashboard_asset(request);
    });
  }
}

}  // namespace

void setup_ws_relay(CLI::App& app, RelayOptions& o) {
  app.description(
      "Broadcast NDJSON events from stdin to WebSocket clients; print their messages on stdout.");
  app.add_option("--listen", o.listen, "Address to listen on, HOST:PORT (port 0: any free port)")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--path", o.path, "WebSocket path")->type_name("PATH")->capture_default_str();
  app.add_option("--max-queue", o.max_queue, "Messages queued per client before it counts as slow")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--slow-client", o.slow_client,
                 "What to do with a client whose queue is full: disconnect (close 1013) or drop "
                 "(oldest messages, then a 'dropped' notice)")
      ->check(CLI::IsMember({"disconnect", "drop"}).description(""))
      ->type_name("disconnect|drop")
      ->capture_default_str();
  app.add_option("--history", o.history, "Events replayed to a new client after its snapshot")
      ->type_name("N")
      ->capture_default_str();
  app.add_flag("--seq", o.seq, "Stamp every broadcast event with \"seq\":N; enables ?since=N");
  app.add_option("--ping-interval", o.ping_interval, "Seconds between WebSocket pings (0: none)")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--ping-timeout", o.ping_timeout,
                 "Close a client (1008) whose pong is this late [default: 2x interval]")
      ->check(kSeconds);
  app.add_flag("--app-ping", o.app_ping, "Also send {\"type\":\"ping\"} messages at each ping");
  app.add_option("--max-clients", o.max_clients, "Most WebSocket clients at once (then HTTP 503)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--max-message", o.max_message, "Largest client message in bytes (then close 1009)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 30).description(""))
      ->type_name("BYTES")
      ->capture_default_str();
  app.add_option("--allow-origin", o.allow_origin,
                 "Origin allowed to connect (repeatable; '*' any) [default: same host]")
      ->type_name("ORIGIN")
      ->allow_extra_args(false);  // one ORIGIN per --allow-origin
  app.add_option("--token", o.token, "Require this token (Authorization: Bearer or ?token=)")
      ->envname("WS_RELAY_TOKEN")
      ->type_name("TOKEN");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate: serve wss:// and https://")
      ->type_name("FILE");
  app.add_option("--tls-key", o.tls_key, "PEM private key for --tls-cert")->type_name("FILE");
  app.add_flag("--exit-on-eof", o.exit_on_eof,
               "Exit when stdin ends (after draining queues) instead of serving on");
  app.add_option("--drain-timeout", o.drain_timeout, "Seconds to drain queues with --exit-on-eof")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--hitl-timeout", o.hitl_timeout,
                 "Seconds an interrupt without its own timeout stays pending")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--audit", o.audit, "Append interrupts and decisions to FILE (NDJSON, fsynced)")
      ->type_name("FILE");
  app.add_option("--route", o.routes,
                 "Serve PATH as a WebSocket endpoint whose clients get FILTER by default "
                 "(repeatable; FILTER: type:GLOB[,GLOB...] and/or machine:GLOB[,...] joined by ';')")
      ->type_name("PATH=FILTER")
      ->allow_extra_args(false);  // one PATH=FILTER per --route
  app.add_option("--machine-history", o.machine_history,
                 "Events kept per machine, replayed to a client whose filter names it (0: none)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--machine-history-bytes", o.machine_history_bytes,
                 "Bound on all --machine-history events; least recently active machines go first")
      ->check(CLI::Range(size_t{1}, size_t{1} << 40).description(""))
      ->type_name("BYTES")
      ->capture_default_str();
  app.add_option("--redis", o.redis,
                 "Join the group of relays sharing one stream on this Redis "
                 "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]); implies --seq")
      ->envname("WS_RELAY_REDIS")
      ->type_name("URL");
  app.add_option("--redis-stream", o.redis_stream, "Name of the group's stream in Redis")
      ->type_name("NAME")
      ->capture_default_str();
  app.add_option("--redis-history", o.redis_history,
                 "Events Redis keeps (and each relay holds) for ?since=")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--redis-buffer", o.redis_buffer,
                 "Stdin events buffered while Redis is away (then the oldest are dropped)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  add_common_flags(app, o.common);
}

int run_ws_relay(const RelayOptions& o) {
  // The loop thread must never block in write(2) on a stderr nobody reads:
  // from here every diagnostic goes through a bounded queue and a thread.
  log::AsyncStderr async_stderr;
  net::ServerOptions so;
  ListenAddress listen;
  if (Status st = parse_listen(o.listen, &listen); !st.ok()) {
    log::error("--listen '" + o.listen + "': " + st.message);
    return exit_code_for(st);
  }
  so.host = listen.host;
  so.port = listen.port;
  if (o.path.empty() || o.path[0] != '/') {
    log::error("--path '" + o.path + "': must start with '/'");
    return kExitUsage;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    log::error("--tls-cert and --tls-key go together");
    return kExitUsage;
  }
  std::vector<Route> routes;
  for (const std::string& spec : o.routes) {
    Route r;
    Status s = parse_route(spec, &r);
    if (s.ok() && (r.path == o.path || r.path == "/" || r.path == "/healthz" ||
                   r.path == "/metrics")) {
      s = Status::Error(Status::kUsage,
                        "--route '" + spec + "': " + r.path + " is already served by ws-relay");
    }
    for (const Route& earlier : routes) {
      if (s.ok() && earlier.path == r.path) {
        s = Status::Error(Status::kUsage, "--route '" + spec + "': " + r.path + " is routed twice");
      }
    }
    if (!s.ok()) {
      log::error(s.message);
      return exit_code_for(s);
    }
    so.extra_paths.push_back(r.path);
    routes.push_back(std::move(r));
  }
  so.path = o.path;
  so.max_queue = o.max_queue;
  so.slow_client = o.slow_client == "drop" ? net::SlowClientPolicy::kDrop
                                           : net::SlowClientPolicy::kDisconnect;
  so.ping_interval = o.ping_interval;
  so.ping_timeout =
      o.ping_timeout >= 0 ? o.ping_timeout : protocol::kPingTimeoutFactor * o.ping_interval;
  so.drop_notice = protocol::dropped_message;
  if (o.app_ping) so.keepalive = [] { return protocol::app_ping_message(wall_now()); };
  so.max_message = o.max_message;
  so.max_clients = o.max_clients;
  so.allow_origins = o.allow_origin;
  so.token = o.token;
  so.tls_cert = o.tls_cert;
  so.tls_key = o.tls_key;
  so.close_timeout = protocol::kSlowClientCloseGrace;
  redis::RedisUrl redis_url;
  if (!o.redis.empty()) {
    Status st = redis::parse_url(o.redis, &redis_url);
    if (!st.ok()) {
      log::error(st.message);
      return exit_code_for(st);
    }
    if (o.redis_stream.empty()) {
      log::error("--redis-stream: must not be empty");
      return kExitUsage;
    }
  }

  AuditLog audit;
  if (!o.audit.empty()) {
    std::string error;
    if (!audit.open(o.audit, error)) {
      log::error(error);
      return kExitCantCreate;
    }
  }

  Relay relay(o, &audit, o.redis.empty() ? nullptr : &redis_url);
  relay.set_routes(std::move(routes));
  net::WsServer server(so, &relay);
  relay.attach(&server);
  if (Status st = server.open(); !st.ok()) {
    log::error(st.message);
    relay.finish();
    return exit_code_for(st);
  }
  // Always shown (unless -q): scripts and tests read the port from it.
  log::note(0, "listening on " + server.url());
  relay.start_group();

  int stop_fd = -1;
  std::thread reader;
  if (!server.watch(STDIN_FILENO, [&relay] { relay.read_stdin_on_loop(); })) {
    log::note(2, "stdin cannot be polled (a regular file?): reading it on its own thread");
    stop_fd = ::eventfd(0, EFD_CLOEXEC);
    reader = std::thread([&] { relay.read_stdin(stop_fd); });
  }
  server.run();
  if (reader.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd, &one, sizeof one);
    reader.join();
    ::close(stop_fd);
  }
  relay.finish();
  const net::ServerStats& s = server.stats();
  log::note(1, "served " + std::to_string(s.connections_total) + " clients, " +
                   std::to_string(s.messages_out) + " messages out");
  return kExitOk;
}

}  // namespace smws
