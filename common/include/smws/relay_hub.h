// SPDX-License-Identifier: Apache-2.0
// RelayHub: ws-relay's protocol state, without sockets, threads or POCO.
// It validates stdin lines, stamps `seq`, keeps the machine table (snapshot)
// and the `--history` ring, builds what a new client receives first, and
// sorts client messages. Sending is the caller's business: every result is a
// payload (the text of one WebSocket message) that the event loop encodes
// once and queues for each client.
//
// Threading: a RelayHub is NOT thread-safe and has no lock. Either one
// thread owns it, or every call is made under one mutex the caller names (in
// ws-relay: Relay::mu_; docs/architecture.md says which threads take it).
// Payloads it returns are immutable and may be handed to any thread.
//
// Message shapes (initial, gap, error) are in docs/protocol.md; the rules for
// the machine table and for `?since=N` are the SPEC's "Edge rules".
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/event.h"
#include "smws/subscription.h"

namespace smws {

// The text of one WebSocket message. Shared (and immutable) because the same
// bytes go to the history ring and to every client queue.
using Payload = std::shared_ptr<const std::string>;

struct HubOptions {
  // --history N: how many of the latest broadcast events a new client gets
  // after its snapshot, and how far back `?since=N` can resume. 0 = none.
  size_t history = 0;
  // --seq: stamp every broadcast event with "seq":N (1, 2, 3 ... per run).
  bool seq = false;
  // Bound on the machine table so an endless stream of new machine_ids cannot
  // grow memory without limit; past it the least recently active machine is
  // forgotten (counted in machines_evicted()). 100k machines is ~tens of MB.
  size_t max_machines = 100000;
  // --machine-history N: the last N events of each machine, replayed to a
  // client whose filter names it (0 = none), bounded in total by
  // --machine-history-bytes (default 64 MiB: ~600k events of 100 bytes).
  size_t machine_history = 0;
  size_t machine_history_bytes = size_t{64} << 20;
  // Events held for `?since=N` beyond the `history` replayed to every new
  // client (ws-relay --redis holds the group's --redis-history). 0: history.
  size_t hold = 0;
};

// What ingest() made of one stdin line.
struct IngestResult {
  enum class Status {
    kBroadcast,  // valid event: send `payload` to every client
    kBlank,      // empty or whitespace-only line: skipped silently (SPEC)
    kInvalid,    // bad line: `error` says why (for stderr); nothing to send
    kRefused,    // a valid event its interceptor refused: `error` says why
    kHeld,       // a valid event its interceptor holds: `payload` is its
                 // text; not stamped, held or broadcast until the caller
                 // publish()es it (ws-relay --audit: an interrupt waits
                 // for its record)
  };
  Status status = Status::kBlank;
  Payload payload;     // kBroadcast: the event as received (surrounding
                       // whitespace trimmed), plus "seq":N under --seq
  std::string type;    // kBroadcast: the event's `type`
  uint64_t seq = 0;    // kBroadcast under --seq: the number given
  // kBroadcast: the event's machine_id when it is a string (decoded), for
  // subscription filters.
  std::optional<std::string> machine;
  std::string error;   // kInvalid: "line 7: not JSON: ..." (no tool prefix);
                       // kRefused: "line 7: " + the interceptor's error

  bool ok() const { return status == Status::kBroadcast; }
};

// What a message from a client asks for.
struct ClientMessage {
  enum class Kind {
    kRefresh,   // {"type":"refresh"}: send that client snapshot()
    kPong,      // {"type":"pong"}: application-level pong, consumed
    kDecision,  // {"type":"decision",...}: for the HITL module; `json` holds it
    kSubscribe, // {"type":"subscribe",...}: new filters (subscription.h's
                // apply_subscribe reads `json`)
    kForward,   // any other JSON object: write `line` to stdout
    kError,     // not JSON, or JSON but not an object: send `reply` to it only
  };
  Kind kind = Kind::kError;
  std::string line;      // kForward: compact JSON (keys in the client's order)
                         // plus '\n', ready for stdout
  std::string reply;     // kError: {"type":"error","error":"..."}
  nlohmann::json json;   // kDecision (and kForward): the parsed message
};

// The machine table follows the SPEC's edge rules: only a state_change whose
// machine_id is a string creates or updates a machine (another type of id is
// broadcast but not tabled).
class RelayHub {
 public:
  explicit RelayHub(HubOptions options = {});

  // One line read from stdin (with or without its '\n'). `now` is the receive
  // time in seconds since the epoch: it becomes a machine's last_activity
  // when the event has no numeric `timestamp`. line_number names the line in
  // error messages; pass the reader's number (ndjson::LineReader skips blank
  // lines, so the hub cannot count them). 0: the hub counts ingest() calls.
  // A valid event is an object with a non-empty string `type`; its bytes are
  // forwarded unchanged (checked, UTF-8 included). The common event costs
  // one allocation-free pass (event::scan's fast path, which also hands back
  // the raw members a state_change is tabled from: ~0.11 us per 100-byte
  // event, ~0.33 us per state_change, against 1.5 us and 4.5 us through
  // nlohmann, release build); nlohmann's parser runs only for what that pass
  // cannot settle, and a DOM is built only for an escaped machine_id, a
  // state_change that is not event::Members::plain, or a "seq" to replace
  // under --seq.
  IngestResult ingest(std::string_view line, double now, uint64_t line_number = 0) {
    return ingest_line(line, now, line_number, true);
  }

  // A message the relay itself broadcasts (e.g. a HITL decision or timeout):
  // a serialized JSON object. It is stamped, held in history and applied to
  // the machine table like a stdin event, without a line number, and not
  // counted in events_in(). Returns nullptr (nothing to send) when the text
  // is not a JSON object: a caller bug, reported rather than thrown.
  Payload publish(std::string_view json_object, double now);

  // --- a relay in a group (ws-relay --redis): the group numbers events ---
  // ingest() without committing: validates the line and runs the
  // interceptors; the payload is the event as it goes to the group (no
  // "seq"). Counted in events_in() / invalid_lines() like ingest().
  IngestResult check(std::string_view line, double now, uint64_t line_number = 0);
  // The group's event number `seq` (from the stream): stamped, held and
  // tabled like publish(), and last_seq() becomes seq. The bytes take
  // ingest()'s hot path (one scan, no DOM for the common event), not
  // publish()'s DOM: every event of a group comes this way. With `applied`,
  // the event's type and string machine_id (for the audience) are returned,
  // so the caller need not parse it again.
  struct Applied {
    std::string type;
    std::optional<std::string> machine;
  };
  Payload apply(uint64_t seq, std::string_view json_object, double now, Applied* applied = nullptr);
  // Applies a state_change to the machine table only (not held, not
  // numbered): rebuilding the table from the group's stored machines.
  void table(std::string_view json_object, double now);
  // The last seq given becomes `seq` (the group's, after a load).
  void set_last_seq(uint64_t seq) { next_seq_ = seq + 1; }
  // A `?since=` at or below `seq` was given before the group's epoch began
  // (Redis lost entries or its data): on_connect answers it with a gap (when
  // below) and a fresh snapshot, never with the events after it as if
  // nothing happened. 0: none (a single relay, the group's first epoch).
  void set_since_floor(uint64_t seq) { since_floor_ = seq; }

  // Hook for events of one `type` (HITL: "interrupt"): called on a valid
  // stdin event before it is stamped. One interceptor per type; setting
  // another replaces it.
  struct Intercept {
    bool ok = true;           // false: refuse the event (not broadcast, not held)
    std::string replacement;  // ok and not empty: the event's new text, a JSON
                              // object (e.g. with an assigned interrupt_id)
    std::string error;        // !ok: why, for stderr
    bool hold = false;        // ok: ingest returns kHeld instead of broadcasting
  };
  using Interceptor = std::function<Intercept(std::string_view event_json, double now)>;
  void set_interceptor(std::string type, Interceptor fn);

  // Source of the "pending" array of every snapshot: returns a serialized
  // JSON array, given the snapshot's `now` (wall clock; a provider on
  // another clock reads its own). Default: "[]" (no HITL module).
  void set_pending_provider(std::function<std::string(double now)> fn);

  // {"type":"initial","machines":[...],"pending":[...],"timestamp":now}
  // machines: {"id","current_state","previous_state","last_activity","data"},
  // least recently active first. Under --seq it also carries "seq":M, the
  // last number the snapshot reflects, so a client knows where to resume.
  //
  // With a filter (subscriptions): only the machines it shows (the machine
  // globs; types hide no machine), and "pending":[] when it opted out of HITL.
  Payload snapshot(double now, const Filter* filter = nullptr) const;

  // What a client receives first, in order, before the live stream.
  // since = the `?since=N` query value (nullopt when absent or when --seq is
  // off, in which case it is ignored):
  //   no since:             snapshot, then the held history
  //   N >= last seq:        nothing (the client missed nothing)
  //   all events > N held:  those events, no snapshot
  //   some already gone:    {"type":"gap","from":N+1,"to":M} (M = newest seq
  //                         no longer held), snapshot, held events after M
  //   N <= the since floor: {"type":"gap","from":N+1,"to":F} when N < F (F =
  //                         the floor), snapshot, held events after F
  // An N larger than the last seq given (a client of an earlier run) is
  // answered like no since: a fresh snapshot.
  //
  // With a filter, every part is narrowed to it: the snapshot as above, the
  // history and the since replay to matching events (seq keeps its gaps);
  // and a filter that names machines gets their --machine-history events
  // too, merged with the history by seq (each event once), oldest first.
  // Whether a gap is announced is decided on the --history ring alone.
  std::vector<Payload> on_connect(std::optional<uint64_t> since, double now,
                                  const Filter* filter = nullptr) const;

  // The answer to a subscribe: the new view's snapshot, then the held
  // --machine-history events of the machines it names, oldest first.
  std::vector<Payload> on_subscribe(const Filter& filter, double now) const;

  // The value of a `?since=` query parameter: a whole decimal number, read
  // as std::stoull reads it (leading blanks and a sign are taken, and "-1"
  // wraps to the largest value, which on_connect answers like no since).
  // nullopt for anything else (empty, "abc", "5x", out of range): the
  // caller logs it and connects the client as if it gave none.
  static std::optional<uint64_t> parse_since(const std::string& text);

  // Sorts one text message from a client (already UTF-8 checked by the codec).
  static ClientMessage classify_client_message(std::string_view text);

  // Counters for /healthz and /metrics.
  uint64_t events_in() const { return events_in_; }          // valid stdin events
  uint64_t invalid_lines() const { return invalid_lines_; }  // bad stdin lines
  uint64_t last_seq() const { return next_seq_ - 1; }        // 0 before the first
  size_t machines() const { return machine_order_.size(); }
  uint64_t machines_evicted() const { return machines_evicted_; }
  size_t history_size() const { return history_.size(); }
  const MachineHistory& machine_history() const { return machine_history_; }

 private:
  // Every field is serialized JSON, as received (the snapshot splices them).
  struct Machine {
    std::string id;                         // the decoded machine_id
    std::string current_state = "null";     // null until a state is seen
    std::string previous_state = "null";    // null when unknown
    std::string last_activity;              // event timestamp or receive time
    std::string data = "{}";                // the last event's data ({} when absent)
    std::string json;                       // this entry of the "machines" array
  };
  struct Held {
    uint64_t seq;
    Payload payload;
    std::string type;                    // for filtered replay
    std::optional<std::string> machine;  // the decoded machine_id, if a string
  };

  // ingest() (commit) or check() (!commit).
  IngestResult ingest_line(std::string_view line, double now, uint64_t line_number, bool commit);
  // Stamps (under --seq), applies a state_change to the machine table, holds
  // in history. `dom` is the parsed event when the caller has it (nullptr
  // otherwise); `has_seq_key`: the event already carries a top-level "seq",
  // which is replaced rather than duplicated.
  // `machine`: the raw members of a state_change from the fast path (nullptr
  // otherwise; then a DOM state_change is tabled from `dom`).
  // `type`/`machine_id`: the event's, for the histories (machine_id nullptr
  // when it has none).
  Payload commit(std::string text, nlohmann::json* dom, bool has_seq_key, double now,
                 uint64_t* seq_out, const event::Members* machine = nullptr,
                 std::string_view type = {}, const std::string* machine_id = nullptr);
  // Appends the held events matching `filter` with seq > after, merged with
  // its machines' --machine-history events (each seq once), oldest first.
  void replay(const Filter* filter, uint64_t after, std::vector<Payload>* out) const;
  // id: the decoded machine_id; fields: raw JSON text of state,
  // previous_state, timestamp and data (the other members unused).
  void apply_state_change(const std::string& id, const event::Members& fields, double now);

  HubOptions options_;
  uint64_t next_seq_ = 1;
  uint64_t since_floor_ = 0;  // set_since_floor
  uint64_t events_in_ = 0;
  uint64_t invalid_lines_ = 0;
  uint64_t lines_ = 0;  // every ingest() call: the line number when none is given
  uint64_t machines_evicted_ = 0;

  // Machine table: list in order of last activity (front = least recent),
  // index by id for O(1) update and move-to-back.
  std::list<Machine> machine_order_;
  std::unordered_map<std::string, std::list<Machine>::iterator> machine_index_;
  // Serialized "machines" array, rebuilt lazily when the table changed, so
  // 5,000 clients connecting at once do not re-serialize it 5,000 times.
  mutable std::string machines_json_;
  mutable bool machines_dirty_ = true;

  std::deque<Held> history_;  // the last options_.history broadcasts, oldest first
  MachineHistory machine_history_;

  event::Scan scan_;  // reused by ingest() so its strings keep their capacity
  std::unordered_map<std::string, Interceptor> interceptors_;
  std::function<std::string(double now)> pending_provider_;
};

}  // namespace smws
