// SPDX-License-Identifier: Apache-2.0
// RedisStream: one relay's membership in a group of relays that share one
// event stream in Redis (SPEC "ws-relay across machines — one stream through
// Redis"; keys, scripts and failure cases in docs/scale-out.md).
//
// What it does
//   - append(): events read from this relay's stdin wait in a bounded buffer
//     (AppendBuffer) and go to Redis in batches, one Lua call per flush(),
//     which numbers them with the group's seq (the stream ID is "<seq>-0")
//     and keeps the machine table and the pending interrupts beside the
//     stream. A batch carries this relay's id and a counter, so a batch
//     resent after a lost reply is appended once.
//   - the tail: a second connection sits in XREAD BLOCK and hands every
//     entry, in stream order, to Listener::on_entries. The relay broadcasts
//     only that, its own appends included, so every relay shows one order.
//   - load: before the first entry, and whenever the tail sees a hole (the
//     stream was trimmed past us) or a new epoch (Redis lost its data), the
//     group's state is read atomically (Listener::on_loaded).
//   - decide(): the atomic "still pending? then mark decided and append the
//     decision" of the group, for HITL decisions and timeouts.
//
// Files: this header and redis_stream.cpp are the link's state machine;
// redis_connection.h the hiredis/epoll adapter it drives; redis_reply.h the
// pure decoding of the replies; redis_scripts.h the Lua scripts (embedded
// from common/src/redis/scripts/); redis_buffer.cpp the AppendBuffer and
// the flow control's arithmetic.
//
// Threads: ONE thread (ws-relay's epoll loop) calls everything. The class
// has no lock. It never blocks: hiredis's async API drives non-blocking
// sockets registered in an epoll set of our own, whose descriptor (fd()) the
// loop watches for readability; on_readable() then does the I/O that is
// ready. on_tick() runs the timers (reconnect backoff, reply deadlines) on
// the caller's `now` (monotonic seconds, clock.h's monotonic_seconds());
// on_readable(), which has no `now`, reads that clock once on entry.
// hiredis would resolve a host name with getaddrinfo(3) inside
// redisAsyncConnect, on the loop thread, where a slow DNS server would stall
// every client's pings: a name is resolved on a short-lived lookup thread
// instead (smws::AsyncLookup, shared with net::resolve_host; one at a time),
// the loop learns of the answer through its eventfd in our epoll set and
// connects to the address. A lookup without an answer after kResolveTimeout
// takes the link down like a failed connect; it is re-resolved at every
// reconnect.
//
// Failure model: any connection failure, refused AUTH, error reply or a
// reply that is late (Redis paused by SIGSTOP, a dead network path) drops
// both connections; the link is "down" (Listener::on_link(false)), appends
// keep buffering, and a reconnect follows after a backoff (0.1 s doubling,
// at most kMaxBackoff apart). Back up, the link reloads what it needs and
// resends the unacknowledged batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smws/async_lookup.h"
#include "smws/redis_url.h"


// hiredis's type, declared here so the header does not pull hiredis in.
struct redisReply;

namespace smws::redis {

// SPEC: "reconnects with backoff (at most 5 s apart)".
constexpr double kMaxBackoff = 5.0;
// With --redis-sentinel: every attempt asks a Sentinel, which names the
// promoted replica as soon as a failover has one.
constexpr double kSentinelMaxBackoff = 0.5;
constexpr double kFirstBackoff = 0.1;
// A command without a reply for this long means the link is gone (a paused
// or partitioned Redis answers nothing and TCP says nothing for minutes).
// Two seconds is ~1000x a healthy round trip on a LAN and short enough that
// a load balancer learns of it from /healthz within a few probe intervals.
constexpr double kReplyTimeout = 2.0;
// The tail's XREAD BLOCK, in milliseconds: an idle tail still gets an
// answer every second, so a paused Redis is noticed within
// kTailBlockMs/1000 + kReplyTimeout.
constexpr int kTailBlockMs = 1000;
// At most this many events (and bytes) per append script call: one call
// holds Redis's single thread for its duration, so keep it to ~a millisecond.
constexpr size_t kMaxBatchEvents = 1000;
constexpr size_t kMaxBatchBytes = 1 << 20;
// Entries per XREAD reply.
constexpr size_t kTailCount = 1000;
// A host name that has not resolved after this long is a failed connect.
constexpr double kResolveTimeout = 5.0;

// Resolves host to a numeric address (the seam a test replaces), on the
// lookup thread; system_lookup is getaddrinfo(3) (async_lookup.h).
using ::smws::LookupFn;
using ::smws::system_lookup;

// One event to append. kind: 'e' any event; 'm' a state_change with a string
// machine_id (key = the id, state = the raw JSON text of its "state" or
// empty); 'i' an interrupt (key = its interrupt_id).
struct Outgoing {
  char kind = 'e';
  std::string key;
  std::string state;
  std::string event;  // the JSON object as it goes to clients, without "seq"
};

// The bounded buffer of events waiting for Redis. Pure: no I/O.
// Overflow drops the oldest waiting event (not one already in a batch that
// was sent) and counts it; the next batch then starts with a gap notice
// {"type":"gap","reason":"redis buffer overflow","relay_id":ID,"dropped":N}
// so every client of the group sees that events are missing.
class AppendBuffer {
 public:
  AppendBuffer(size_t capacity, std::string relay_id);

  // false: the buffer was full and its oldest event was dropped for this one.
  bool push(Outgoing event);
  bool empty() const { return waiting_.empty() && dropped_pending_ == 0; }
  size_t size() const { return waiting_.size(); }

  struct Batch {
    uint64_t counter = 0;  // this relay's batch number: 1, 2, 3 ...
    std::vector<Outgoing> events;
  };
  // The next batch (at most max_events events / max_bytes bytes, at least
  // one event), with the next counter. Empty batch when nothing waits.
  Batch take(size_t max_events = kMaxBatchEvents, size_t max_bytes = kMaxBatchBytes);

  uint64_t dropped_total() const { return dropped_total_; }

 private:
  size_t capacity_;
  std::string relay_id_;
  std::deque<Outgoing> waiting_;
  uint64_t dropped_pending_ = 0;  // dropped since the last gap notice
  uint64_t dropped_total_ = 0;
  uint64_t next_counter_ = 1;
};

// "123-0" → 123. false for anything else (an ID we did not write).
bool parse_entry_id(std::string_view id, uint64_t* seq);

// What the tail does with an XREAD reply whose first entry is first_seq,
// given the last seq delivered: kDeliver when it follows (first == last+1),
// kResync otherwise (trimmed past us, or a stream that restarted).
enum class TailStep { kDeliver, kResync };
TailStep next_tail_step(uint64_t last_delivered, uint64_t first_seq);

// Every relay reports the position of its tail to Redis (S:tails) after
// reads that moved it (at most one report per 5 ms, the last of a burst
// sent by the stream's timer) and at least every kReportInterval; a
// position older than 3 s (a relay gone or stopped) does not count. The
// report's answer also names the epoch and its start (report.lua).
constexpr double kReportInterval = 1.0;

// Flow control of the appends against the tails. The stream is
// trimmed to about `history` entries, so entries appended faster than the
// tails read them are trimmed unread, and every relay of the group would
// resync (a gap) in the middle of a burst that Redis itself took easily.
// A relay therefore keeps at most history/2 of its appended entries
// unread by its own tail and by the slowest tail that reported within 3 s
// (the other half is the margin for reports that are a round trip old):
// the size of the next batch, 0 = wait for the tails. appended: the last
// seq of this relay's last acknowledged batch; tailed: the lower of its own
// tail's last seq and the slowest reported one.
size_t append_allowance(uint64_t appended, uint64_t tailed, size_t history,
                        size_t max_batch = kMaxBatchEvents);

// One machine as kept in Redis: the seq of its last state_change, the state
// it had before that event (raw JSON text, empty when none), and the event.
struct StoredMachine {
  uint64_t seq = 0;
  std::string former_state;
  std::string event;
};

// The group's state, read in one atomic script.
struct GroupSnapshot {
  std::string epoch;
  uint64_t last_seq = 0;
  // The seq before the epoch's first event: a `?since=` at or below it was
  // given before this epoch (another Redis, or one that lost entries), so it
  // gets a gap or a fresh snapshot, never the next events as if nothing
  // happened (SPEC's epoch rule). 0 for the group's first epoch.
  uint64_t start = 0;
  std::vector<StoredMachine> machines;    // any order
  struct Pending {
    std::string event;  // the interrupt as broadcast
    double age_s = 0;   // seconds since it was appended (Redis's clock)
  };
  std::vector<Pending> pending;           // in seq order
  struct Entry {
    uint64_t seq;
    std::string event;
  };
  std::vector<Entry> recent;              // the newest entries, oldest first
};

// The events that rebuild the machine table when applied in order to a
// RelayHub (only the table: not broadcast, not held): the machines by seq,
// each preceded, when its event has no previous_state, by a synthetic
// {"type":"state_change","machine_id":ID,"state":FORMER} so the table's
// previous_state is the former state exactly as on the relay that saw both.
std::vector<std::string> machine_replay(const GroupSnapshot& snapshot);

// Counters for /metrics (the loop thread writes and reads them).
struct StreamStats {
  uint64_t appended = 0;          // events acknowledged by the append script
  uint64_t append_batches = 0;    // script calls acknowledged
  uint64_t duplicates = 0;        // batches Redis had already appended
  uint64_t append_waits = 0;      // flushes held back until the tail caught up
  uint64_t tailed = 0;            // entries handed to on_entries
  uint64_t resyncs = 0;           // full loads after the first
  uint64_t reconnects = 0;        // connection attempts after the first
  uint64_t buffer_dropped = 0;    // events dropped: the buffer was full
  uint64_t auth_failures = 0;
  size_t buffered = 0;            // events waiting (not yet acknowledged)
  uint64_t failovers = 0;         // masters followed after the first (Sentinel)
  uint64_t wait_timeouts = 0;     // WAITs (--redis-replicas) answered by fewer replicas
  std::string master;             // "HOST:PORT" of the Redis in use ("" before the first)
};

struct StreamOptions {
  RedisUrl url;
  std::string stream = "smws";  // key of the stream; other keys are "<stream>:..."
  size_t history = 10000;       // MAXLEN ~ of the stream
  size_t buffer = 100000;       // events held while Redis is away
  size_t load_recent = 0;       // newest entries read at a full load (for ?since=)
  size_t max_machines = 100000; // machines kept in Redis (a relay's table bound; 0: no bound)
  std::string relay_id;         // unique in the group (random per run)
  std::string epoch_candidate;  // random per relay: the epoch it sets when Redis has none
                                // (with ".N" appended, new for every script call)
  LookupFn lookup;              // empty: system_lookup
  // Redis Sentinel (--redis-sentinel, --redis-master): non-empty, the master
  // is the address the Sentinels give for master_name, asked in turn at
  // every connect (at most kSentinelMaxBackoff apart), and a +switch-master
  // or +promoted-slave moves the link at once; url then gives only the
  // credentials and the database.
  std::vector<HostPort> sentinels;
  std::string master_name;
  // --redis-replicas, --redis-wait-timeout: > 0, an append is acknowledged
  // (leaves the buffer) and a tailed entry is delivered only once WAIT says
  // this many replicas hold it; a WAIT answered by fewer after wait_timeout
  // seconds is counted and asked again.
  int replicas = 0;
  double wait_timeout = 1.0;
};

enum class DecideOutcome { kWon, kNotPending, kUnavailable };

class Connection;

class RedisStream {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // The group's state; the relay resets its table, history and seq to it.
    // first: the first load of this run. Otherwise a resync: either the
    // epoch changed (Redis lost its data) or entries were trimmed before
    // the tail could read them; clients need a gap notice and a snapshot.
    virtual void on_loaded(const GroupSnapshot& snapshot, bool first) = 0;
    // The next entries of the stream, dense (seq last+1, last+2 ...).
    virtual void on_entries(const std::vector<GroupSnapshot::Entry>& entries) = 0;
    // The link went up (loaded, tailing) or down.
    virtual void on_link(bool up) = 0;
  };

  RedisStream(StreamOptions options, Listener* listener);
  ~RedisStream();
  RedisStream(const RedisStream&) = delete;
  RedisStream& operator=(const RedisStream&) = delete;

  // The descriptor to watch for readability (an epoll set of our own).
  int fd() const { return epoll_fd_; }
  // Starts the first connection attempt; now: monotonic seconds.
  void start(double now);
  // I/O that is ready; call when fd() is readable.
  void on_readable();
  // Timers; call every few hundred milliseconds with monotonic seconds
  // (clock.h's monotonic_seconds(), the clock on_readable() reads).
  void on_tick(double now);

  // Buffers one event (false: the buffer was full, its oldest was dropped).
  bool append(Outgoing event);
  // Sends what is buffered when the link is up and no batch is in flight.
  void flush();

  // The group's atomic decide: if interrupt_id is pending, it stops being
  // pending and `decision` is appended to the stream (it reaches every relay
  // through the tail). done() is called exactly once, on the loop thread.
  void decide(const std::string& interrupt_id, const std::string& decision,
              std::function<void(DecideOutcome)> done);

  bool up() const { return state_ == State::kUp; }
  const std::string& epoch() const { return epoch_; }
  // The epoch's start (GroupSnapshot::start) as last loaded.
  uint64_t epoch_start() const { return epoch_start_; }
  uint64_t last_seq() const { return tail_pos_; }
  // Why the link is down, for /healthz and logs ("" while up).
  const std::string& down_reason() const { return down_reason_; }
  StreamStats stats() const;

  // The Lua scripts, exposed so tests can run them against a real Redis.
  static const char* append_script();
  static const char* decide_script();
  static const char* load_script();

 private:
  enum class State { kDown, kConnecting, kUp };
  enum class Kind {
    kHandshake, kRole, kLoadMeta, kLoadFull, kTail, kAppend, kAppendWait, kDecide, kReport,
    kGateReport, kGateWait
  };

  void connect(double now);
  // Numeric host: at once; a name: through the lookup thread first. Then
  // ask_sentinel_at (a Sentinel's host) or connect_to (Redis's).
  void resolve_then(const std::string& host, bool sentinel);
  void connect_to(const std::string& address);
  void start_lookup();
  void on_lookup_done();
  // Sentinel: the next one in turn (sentinel_tries_ of this attempt), its
  // answer, a +switch-master, and the subscription kept beside the link.
  void ask_next_sentinel();
  void ask_sentinel_at(const std::string& address);
  void on_sentinel_answer(redisReply* reply);
  void on_sentinel_lost(bool connecting, const std::string& why);
  void subscribe_sentinel();
  void on_switch_message(redisReply* reply);
  void use_master(const std::string& host, int port);
  void run_deferred();
  int redis_port() const;
  std::string where() const;  // the Redis in use, for messages (never the password)
  // Sends argv on c; the reply (null: the connection went first) goes to
  // handle_reply, with done for a decide and the tail generation for XREAD.
  // allowed: seconds the reply may take (< 0: the connection's default).
  void send(Connection* c, Kind kind, const std::vector<std::string>& argv,
            std::function<void(DecideOutcome)> done = {}, double allowed = -1);
  void send_wait(Kind kind);
  void acknowledge_append();
  void deliver(std::vector<GroupSnapshot::Entry> entries, bool hole);
  void handle_reply(Kind kind, redisReply* reply, const std::function<void(DecideOutcome)>& done,
                    uint64_t generation);
  void on_lost(const Connection& c, bool connecting, const std::string& why);
  void fail(const std::string& why);
  void drop_now();
  void request_load(bool full);
  void on_load_reply(redisReply* reply, bool full);
  void tail();
  void on_tail_reply(redisReply* reply);
  void on_append_reply(redisReply* reply);
  void became_up();
  void report_tail(bool now = false);
  void arm_timer(double seconds);
  void on_timer();
  std::vector<std::string> keys_for_append() const;
  std::string next_epoch_candidate();

  StreamOptions options_;
  Listener* listener_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;         // one-shot: the next report (in epoll_fd_)
  bool timer_armed_ = false;
  std::unique_ptr<Connection> cmd_;   // appends, loads, decides, reports
  std::unique_ptr<Connection> tail_;  // XREAD BLOCK only
  // Sentinel mode: the connection that asks for the master (one attempt,
  // then closed) and the one subscribed to +switch-master, kept across the
  // link's ups and downs so a failover is followed at once.
  std::unique_ptr<Connection> sentinel_ask_;
  std::unique_ptr<Connection> sentinel_sub_;
  size_t sentinel_next_ = 0;        // the Sentinel to ask next (rotates)
  size_t sentinel_tries_ = 0;       // Sentinels asked in this attempt
  std::string sentinel_error_;      // why the last one did not answer
  bool sentinel_asking_ = false;    // an ask is in flight (connect attempt)
  bool sentinel_retry_ = false;     // ask the next one (deferred out of a callback)
  bool sentinel_ask_done_ = false;  // close sentinel_ask_ (deferred out of its callback)
  std::string ask_address_;         // numeric address of the Sentinel being asked
  int ask_port_ = 0;
  bool sentinel_subscribed_ = false;
  std::string sub_address_;         // the last Sentinel that answered: where to subscribe
  int sub_port_ = 0;
  double sentinel_sub_retry_ = 0;   // when to subscribe again after a loss
  std::string master_host_;         // the Redis in use (Sentinel: its answer)
  int master_port_ = 0;
  bool have_master_ = false;        // master_host_ was ever set (failovers count after)
  // The host name's lookup in flight (inactive: none); its thread may
  // outlive this object (it owns only the shared state).
  AsyncLookup lookup_;
  double lookup_started_ = 0;
  bool awaiting_lookup_ = false;  // the current connect attempt waits for lookup_
  std::string lookup_host_;       // what lookup_ resolves
  std::string wanted_host_;       // what the current attempt waits for
  bool lookup_for_sentinel_ = false;
  State state_ = State::kDown;
  bool loaded_once_ = false;
  bool drop_requested_ = false;  // fail() inside a callback: drop_now() after it
  bool destroying_ = false;
  std::string down_reason_ = "not connected yet";
  bool down_logged_ = false;
  double now_ = 0;  // monotonic seconds of the current entry point (start, on_tick, on_readable)
  double next_attempt_ = 0;
  double backoff_ = kFirstBackoff;
  std::string epoch_;          // "" until the first load
  uint64_t epoch_start_ = 0;   // GroupSnapshot::start of the last load
  std::string last_event_;     // the event of the entry at tail_pos_ ("": unknown)
  bool load_in_flight_ = false;
  uint64_t tail_pos_ = 0;      // the last seq delivered (or loaded)
  bool tail_in_flight_ = false;
  uint64_t tail_generation_ = 0;  // bumped by every full load
  uint64_t candidates_ = 0;       // epoch candidates made
  AppendBuffer buffer_;
  std::unique_ptr<AppendBuffer::Batch> in_flight_;  // taken, not yet acknowledged
  bool append_outstanding_ = false;  // in_flight_ sent on this connection
  // --redis-replicas: the append script's answer for in_flight_, kept until
  // WAIT says enough replicas hold it.
  bool append_answered_ = false;
  bool append_was_duplicate_ = false;
  uint64_t answered_last_ = 0;
  int64_t answered_slowest_ = -1;
  bool answered_has_slowest_ = false;
  std::string answered_epoch_;
  // --redis-replicas: entries the tail read, delivered once WAIT says
  // enough replicas hold them (the tail waits meanwhile).
  std::vector<GroupSnapshot::Entry> gated_;
  bool gated_hole_ = false;
  bool gate_in_flight_ = false;
  uint64_t gate_generation_ = 0;
  bool wait_short_logged_ = false;
  uint64_t appended_seq_ = 0;        // last seq of our last acknowledged batch
  std::string appended_last_event_;  // its last event (the epoch rule's check)
  int64_t slowest_tail_ = -1;        // the slowest fresh tail in S:tails (-1: unknown)
  bool report_in_flight_ = false;    // a kReport sent, not answered
  bool report_again_ = false;        // the tail moved while one was in flight
  double last_report_ = 0;
  double wait_started_ = 0;          // when the current append wait began
  bool append_waiting_ = false;      // a flush is held for the tail (counted once)
  StreamStats stats_;
};

}  // namespace smws::redis
