// SPDX-License-Identifier: Apache-2.0
// Human-in-the-loop: the pending-interrupt table of ws-relay, decision
// validation, timeouts, and the two small I/O helpers around them (the audit
// log and the reply datagram). Message shapes: docs/hitl.md.
//
// HitlTable is pure logic: no sockets, no threads, no clock of its own. Every
// call takes `now` (seconds on any monotonic clock the caller chooses; the
// relay uses steady_clock) so tests control time exactly.
//
// Threads: HitlTable has no lock; its owner serialises every call. In
// ws-relay that owner is the Relay's mutex (relay::Relay::mu_, relay/relay.h,
// where clang checks it):
// the event-loop thread calls on_decision, expire and pending_json, and
// on_interrupt when it reads stdin itself; the stdin thread (only when stdin
// is a regular file) calls on_interrupt; each call is made with mu_ held.
// Because all interrupts, decisions and timeouts pass through that one lock,
// "first valid decision wins" is simply "first call wins". ws-relay's output
// thread owns the AuditLog (never under the lock); the loop sends reply
// datagrams with MSG_DONTWAIT, some of them with mu_ held (Relay::deliver):
// the send never blocks, so the lock is not held across a wait.
//
// The instant of the timeout: an interrupt whose deadline is <= now is no
// longer decidable. on_decision(now >= deadline) refuses with "not pending"
// (reason "timed out") and leaves the interrupt in the table so that the next
// expire(now) resolves it as a timeout; expire(now) resolves every interrupt
// with deadline <= now. So the outcome does not depend on whether the owner
// calls expire() or on_decision() first for the same `now`: at the instant of
// the deadline the timeout wins.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "smws/protocol.h"

namespace smws {

// Default lifetime of an interrupt without a `timeout` field (ws-relay
// --hitl-timeout); protocol.h says why five minutes.
constexpr double kHitlDefaultTimeout = protocol::kDefaultHitlTimeout;

// Bound on the pending table: every structure in the relay is bounded. An
// interrupt over it is refused (reported, not broadcast) rather than growing
// memory without limit when a script loops by mistake.
constexpr std::size_t kHitlMaxPending = 10000;

// How many decided/expired ids are remembered so that a late decision gets
// the reason "already decided"/"timed out" instead of "unknown interrupt".
constexpr std::size_t kHitlRememberResolved = 1024;

struct HitlOptions {
  double default_timeout = kHitlDefaultTimeout;  // --hitl-timeout
  std::size_t max_pending = kHitlMaxPending;
};

// A resolved interrupt: what to broadcast to every client, print on stdout,
// append to the audit log, and (when reply_to is not empty) send as one
// datagram to reply_to.
struct HitlResolution {
  nlohmann::json decision;
  std::string reply_to;
};

// on_interrupt's answer.
struct HitlInterruptResult {
  bool ok = false;
  // ok: the interrupt as it must be broadcast (interrupt_id and timeout
  // filled in), audited and kept for snapshots.
  nlohmann::json event;
  // !ok: why it was refused, for a warning on stderr ("interrupt: ...").
  // The event is then neither pending nor broadcast.
  std::string error;
};

// on_decision's answer: exactly one of the two is set.
struct HitlDecisionResult {
  // Accepted: the interrupt is no longer pending.
  std::optional<HitlResolution> resolved;
  // Refused: {"type":"error","error":...,"interrupt_id"?,"reason"?} for the
  // sender only. The interrupt (if any) stays pending.
  nlohmann::json error;

  bool accepted() const { return resolved.has_value(); }
};

class HitlTable {
 public:
  explicit HitlTable(HitlOptions options = {});

  // An `interrupt` event read from stdin. Assigns `interrupt_id` ("i-N",
  // never one that is pending) when missing, sets `timeout` to the default
  // when missing, and records deadline = now + timeout. Refused: not an
  // object, `interrupt_id` not a non-empty string or already pending,
  // `action_requests` not a non-empty array of objects with a string `name`,
  // `review_configs` present but malformed, `timeout` not a number >= 0,
  // `reply_to` not a string, table full.
  HitlInterruptResult on_interrupt(nlohmann::json event, double now);
  // The same checks and fill-ins, without adding it: ok means that
  // on_interrupt(result.event, now) will accept it as long as no other
  // interrupt is added in between (ws-relay --audit records an interrupt
  // before it is pending, and reads no other stdin line meanwhile). An
  // assigned id is never handed out again.
  HitlInterruptResult prepare_interrupt(nlohmann::json event);

  // A `decision` message from the client at `client` ("127.0.0.1:5555").
  // Checks, in order: an object; a string interrupt_id; pending (error
  // "not pending", reason "already decided" | "timed out" | "unknown
  // interrupt_id"); thread_id, when given, equal to the interrupt's;
  // `decisions` an array with one entry per action request; each entry an
  // object whose `type` is approve|edit|reject and allowed by the
  // review_config of its action; edit entries carry an `edited_action`
  // object with a non-empty string `name` and an object `args`; reject's
  // `message`, when given, is a string. The accepted decision keeps every
  // field the client sent (decided_by included), with type, interrupt_id and
  // thread_id (from the interrupt) set and "client" added.
  // resolve = false (a relay in a group, which asks the group first):
  // everything is checked and the accepted decision returned, but the
  // interrupt stays pending until resolve_elsewhere().
  HitlDecisionResult on_decision(const nlohmann::json& decision,
                                 const std::string& client, double now, bool resolve = true);
  // --- Recorded before it takes effect (ws-relay --audit) ---
  // A resolution goes through three states: pending -> in flight -> resolved,
  // or back to pending. begin_decision checks exactly like on_decision and,
  // when it accepts, leaves the interrupt in flight: still in the table and
  // in pending_json (it is not decided yet), without a timer (next_deadline
  // and expire skip it: a decision made before the deadline is not overtaken
  // by the timeout while its record is written), and a second decision is
  // refused with "not pending", reason "being recorded". begin_expire is
  // expire() with the timed-out interrupts left in flight instead of
  // resolved. The owner then calls exactly one of:
  //   commit(id): the record was kept; the interrupt is resolved (a later
  //               decision gets "already decided" or "timed out");
  //   abort(id):  it was not; the interrupt is pending again exactly as
  //               before the attempt (same deadline; a timeout whose record
  //               failed is due again at once and retried by the next
  //               begin_expire).
  // Both return false when interrupt_id is not in flight.
  HitlDecisionResult begin_decision(const nlohmann::json& decision, const std::string& client,
                                    double now);
  std::vector<HitlResolution> begin_expire(double now);
  bool commit(const std::string& interrupt_id);
  bool abort(const std::string& interrupt_id);
  bool in_flight(const std::string& interrupt_id) const;

  // The group decided (or timed out) interrupt_id: it stops being pending
  // here too. False when it was not pending.
  bool resolve_elsewhere(const std::string& interrupt_id, bool timed_out);

  // Resolves every interrupt (not in flight) whose deadline is <= now as
  // {"type":"decision","interrupt_id","thread_id"?,"decisions":[{"type":"reject",
  //  "message":"timed out"} per action request],"timed_out":true},
  // oldest deadline first.
  std::vector<HitlResolution> expire(double now);

  // The earliest deadline of a pending interrupt (the loop's next timer),
  // nullopt when nothing is pending.
  std::optional<double> next_deadline() const;

  // Pending interrupts, oldest first, as broadcast, each with "expires_in"
  // (seconds left at `now`, >= 0) added, for the snapshot's "pending" array.
  nlohmann::json pending_json(double now) const;

  std::size_t pending_count() const { return pending_.size(); }
  bool is_pending(const std::string& interrupt_id) const;
  // The pending interrupt as it was added (reply_to included), or nullptr.
  const nlohmann::json* pending_event(const std::string& interrupt_id) const;

 private:
  // What an interrupt's resolution in flight is (begin_decision/begin_expire).
  enum class Flight { kNone, kDecision, kTimeout };
  struct Pending {
    nlohmann::json event;
    double deadline = 0;
    unsigned long long arrival = 0;
    Flight flight = Flight::kNone;
  };

  void remember_resolved(const std::string& id, const char* reason);
  // The due interrupts, oldest deadline first: resolved, or left in flight.
  std::vector<HitlResolution> take_due(double now, bool resolve);

  HitlOptions options_;
  std::unordered_map<std::string, Pending> pending_;
  unsigned long long next_id_ = 1;
  unsigned long long arrivals_ = 0;
  // Bounded memory of resolved ids and why (kHitlRememberResolved entries).
  std::deque<std::string> resolved_order_;
  std::unordered_map<std::string, const char*> resolved_reason_;
};

// --- helpers shared by the clients (hitl-approve) and the relay ----------

// The decision types allowed for the action called action_name: those of
// the first review_config naming it, else all three (approve, edit, reject).
std::vector<std::string> allowed_decisions(const nlohmann::json& interrupt,
                                           const std::string& action_name);

// Checks an edited action: an object with a non-empty string "name" and an
// object "args". Returns an empty string when valid, else what is wrong.
std::string check_edited_action(const nlohmann::json& action);

// Expands a short decision as scripts write it,
//   {"interrupt_id":"i-7","type":"approve"}
//   {"interrupt_id":"i-7","type":"reject","message":"no"}
//   {"interrupt_id":"i-7","type":"edit","edited_action":{...}}  (one action)
//   {"interrupt_id":"i-7","decisions":[...]}                     (already full)
// into the full decision message for `interrupt` (one entry per action
// request; for a multi-action interrupt approve/reject apply to every
// action, edit is refused). `decided_by`, when not empty, is added unless
// the short form carries one. Returns nullopt and sets error when the short
// decision is malformed. No check against review_configs: the relay does it.
std::optional<nlohmann::json> expand_decision(const nlohmann::json& interrupt,
                                              const nlohmann::json& short_decision,
                                              const std::string& decided_by,
                                              std::string& error);

// What a decision means to the program that asked for it and waits (sm-send
// --wait-reply; SPEC "sm-send", Edge rules): 0 when every entry approves or
// edits, 1 when any rejects, 75 when the relay timed the request out, 65 when
// it is not a decision these rules can read (no "decisions" list, an entry
// of unknown type). message says why, for stderr: a warning with 75, an
// error with 65, a note for -v ("approved", "rejected: MESSAGE") otherwise.
struct DecisionExit {
  int code = 0;
  std::string message;
};
DecisionExit decision_exit_code(const nlohmann::json& decision);

// --- I/O around the table (not used by HitlTable itself) -----------------

// --audit FILE: one NDJSON line per interrupt, decision and timeout, each
// written with one write(2) and fsync(2)ed before append() returns, so a
// record that was reported as written survives a crash. append() blocks for
// the fsync (milliseconds); HITL traffic runs at human rates.
//
// A failed append changes nothing: the bytes of a record that could not be
// written or fsynced are cut off again (ftruncate to where it began, when
// the file is a regular file), so a record is in the file exactly when
// append() said so. Before each record append() also checks that the path
// still names the file it has open: when the file was deleted or renamed
// (rotated) it opens the path anew, creating it, which fails while the
// directory is gone; and a file whose mode no longer lets us write is
// refused (EACCES) although the open descriptor would still accept writes.
// Thread-safety: none; one thread owns an AuditLog (in ws-relay, the output
// thread, which is not the thread that calls the HitlTable).
class AuditLog {
 public:
  AuditLog() = default;
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Opens (creates, mode 0640) path for appending. Returns false and sets
  // error ("audit file PATH: why") when it cannot; the relay exits 73.
  bool open(const std::string& path, std::string& error);
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // Appends record (plus "logged_at": wall-clock seconds since the epoch)
  // as one line and fsyncs. Returns false and sets error ("audit file PATH:
  // why", why being the errno text) when the record is not kept.
  bool append(const nlohmann::json& record, std::string& error);
  // The same for a line the caller built (no "\n"; ws-relay's hash chain
  // adds "prev" to each record first, smws/auth/audit_chain.h).
  bool append_line(const std::string& line, std::string& error);

 private:
  // Reopens path_ when it no longer names the open file; checks it is
  // writable. False with error set when the record cannot go there.
  bool check_path(std::string& error);

  int fd_ = -1;
  std::string path_;
};

// Sends payload as one datagram to the AF_UNIX SOCK_DGRAM socket at path,
// without blocking (MSG_DONTWAIT). Returns an empty string on success, else
// "reply to PATH: why" (the waiting sm-send has gone away, its buffer is
// full, ...): an error to log, never fatal.
std::string send_reply_datagram(const std::string& path, const std::string& payload);

}  // namespace smws
