// SPDX-License-Identifier: Apache-2.0
// The client side of human-in-the-loop (hitl-approve): the approval queue.
// It mirrors the relay's pending interrupts as last seen, remembers the
// decisions sent and not yet answered, applies the --auto/--match rule,
// sends decisions again after a reconnect, holds a stdin decision for an
// interrupt that has not arrived yet, and says when a request is about to
// time out. Message shapes: docs/hitl.md; the relay's side is hitl.h.
//
// Pure logic, like HitlTable: no sockets, no terminal, no clock of its own.
// Every call that depends on time takes `now` (seconds on a monotonic clock
// the caller picks; hitl-approve uses steady_clock). What the caller must do
// (send a message, show a notice, print a decision) comes back as a list of
// HitlEffect values from take_effects(), so a test can read the whole
// conversation without a relay.
//
// The relay is the authority: an interrupt leaves the queue only when a
// decision or timeout for it is broadcast, the relay refuses a decision as
// "not pending", or a snapshot no longer lists it.
//
// Threads: none inside; one thread (hitl-approve's UI thread) owns a
// HitlClient and makes every call.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace smws {

// How long a stdin decision for an interrupt that is not pending is held
// waiting for it. A script that learns of an interrupt elsewhere (sm-send's
// output, a log) may answer before the relay's broadcast reaches us; that
// broadcast is milliseconds behind, so 5 s is ample, and short enough that a
// decision for a wrong id is reported while the script still runs.
constexpr double kHitlHoldTimeout = 5.0;

// "About to time out": the last quarter of a request's life, at least one
// second and at most 30 (a human needs that long to read and press a key).
double hitl_warn_threshold(double timeout);

// What hitl-approve's reader thread does with a text message from the relay
// before the UI thread sees it. The relay sends every event to every client,
// thousands a second, and closes one that falls behind (1013), so most are
// dropped here: a message whose text holds none of the HITL type names (nor
// "ping", nor a \u escape that could spell one) is dropped unparsed.
enum class HitlRelayText {
  kDrop,     // not a HITL message
  kKeep,     // initial, interrupt, decision, error, gap or dropped: to the UI
  kAppPing,  // {"type":"ping"}: answer {"type":"pong"} at once
};
HitlRelayText classify_relay_text(std::string_view text);

// An interrupt's action_requests (an empty array when missing or malformed).
const nlohmann::json& hitl_actions(const nlohmann::json& interrupt);
// "deploy, notify": the names of an interrupt's actions, for notices.
std::string hitl_action_names(const nlohmann::json& interrupt);
// "approve", or "reject, approve" for a decision on several actions.
std::string hitl_decision_verbs(const nlohmann::json& decision);

// Who made a decision that was sent.
enum class HitlSource { kPrompt, kAuto, kStdin };

// One thing the caller must do or show, in the order it happened.
struct HitlEffect {
  enum class Kind {
    kSend,       // message: send it to the relay (a decision or a refresh)
    kSnapshot,   // a snapshot was applied (the prompt may now ask)
    kQueued,     // id: newly pending and left to a human (not auto-decided);
                 // live: it arrived after the snapshot (a "new request")
    kAccepted,   // id, message: our decision was broadcast; source, line
    kWithdrawn,  // id, text (why): gone without our decision; names
    kRefused,    // id, text: the relay refused our decision; source, line
    kLost,       // id: resolved while we were disconnected, our decision's
                 // outcome is not known
    kTimingOut,  // id, seconds (left): the request entered its last stretch
    kLineError,  // line, text: a stdin decision that was not sent
    kWarning,    // text: anything else worth a warning
    kNote,       // text: detail for -v
  };
  Kind kind = Kind::kNote;
  std::string id;
  nlohmann::json message;
  std::string text;
  std::string names;  // kWithdrawn, kQueued: "deploy, notify"
  HitlSource source = HitlSource::kPrompt;
  long line = 0;      // stdin line number, 0 when not from stdin
  double seconds = 0;
  bool live = false;
};

struct HitlClientOptions {
  std::string decided_by;           // --as: sent as decided_by
  std::string auto_decision;        // --auto: "", "approve" or "reject"
  std::vector<std::string> match;   // --match globs on action names (fnmatch)
  double hold_timeout = kHitlHoldTimeout;
};

class HitlClient {
 public:
  struct Item {
    nlohmann::json interrupt;  // as broadcast, without "expires_in"
    double deadline = 0;       // `now` units
    double timeout = 0;        // its full lifetime, seconds
    bool warned = false;       // kTimingOut was emitted
    bool skipped = false;      // the human skipped it at the prompt
  };

  explicit HitlClient(HitlClientOptions options);

  // A connection is open; local_address ("ip:port" of our end, as the relay
  // writes it into a decision's "client") tells our decisions from others'.
  // The next "initial" message is then the snapshot that resends what was
  // sent before the reconnect.
  void on_connected(std::string local_address);
  // The connection is gone: nothing is ours until the next snapshot.
  void on_disconnected();
  bool connected() const { return connected_; }
  bool has_snapshot() const { return got_snapshot_; }

  // A message from the relay. Only the HITL types matter (initial,
  // interrupt, decision, error, gap, dropped); fields of the wrong type make
  // it a kWarning, never an exception.
  void on_message(const nlohmann::json& message, double now);

  // One NDJSON line of decisions in the short form scripts write
  // (expand_decision in hitl.h); number: its line number. Blank lines are
  // skipped. A decision for an interrupt that is not pending is held for
  // hold_timeout and sent when the interrupt arrives, else reported.
  void on_input_line(std::string_view line, long number, double now);

  // A decision made at the prompt for pending id: one entry per action.
  void decide(const std::string& id, nlohmann::json decisions);

  // Time passes: emits kTimingOut for requests entering their last stretch
  // and kLineError for held stdin decisions whose interrupt never came.
  void tick(double now);
  // The earliest `now` at which tick() has something to do, if any.
  std::optional<double> next_tick() const;

  // Asks the relay for a fresh snapshot (messages may have been missed).
  void refresh();

  std::vector<HitlEffect> take_effects();

  // --- for the prompt ---------------------------------------------------
  const Item* find(const std::string& id) const;
  Item* find(const std::string& id);
  // The first pending request, in arrival order, that waits for a human:
  // not decided by us, not tried by --auto, not skipped. *skipped: how many
  // were passed over because the human skipped them.
  std::optional<std::string> next_to_ask(std::size_t* skipped) const;
  // Pending requests that still wait for a human (the "N pending" count).
  std::size_t waiting_count() const;
  void unskip_all();

  // --- for the end of input -------------------------------------------
  // Decisions sent and not yet answered, and held stdin decisions.
  bool awaiting() const { return !sent_.empty() || !held_.empty(); }
  std::vector<std::string> unanswered() const;
  std::size_t pending_count() const { return pending_.size(); }

  // Whether decision (a broadcast "decision") is ours: by the "client"
  // address when the relay sets it, else by decided_by.
  bool is_ours(const nlohmann::json& decision) const;
  // Whether --auto decides this interrupt: every action's name matches a
  // --match glob (or there is none) and allows the --auto decision.
  bool auto_applies(const nlohmann::json& interrupt) const;

 private:
  struct Sent {
    nlohmann::json decision;
    HitlSource source = HitlSource::kPrompt;
    long line = 0;
  };
  struct Held {
    nlohmann::json short_form;
    std::string id;
    long line = 0;
    double since = 0;
  };

  void on_snapshot(const nlohmann::json& message, double now);
  void on_interrupt(const nlohmann::json& interrupt, std::optional<double> expires_in, double now);
  void on_decision(const nlohmann::json& decision);
  void on_error(const nlohmann::json& error);
  void withdraw(const std::string& id, const std::string& why);
  void try_auto(const std::string& id);
  // Sends a stdin decision for a pending id, or reports why it cannot.
  void submit(const nlohmann::json& short_form, const std::string& id, long line);
  void send(const nlohmann::json& message);
  void emit(HitlEffect effect) { effects_.push_back(std::move(effect)); }

  HitlClientOptions options_;
  std::string local_address_;
  bool connected_ = false;
  bool got_snapshot_ = false;
  std::map<std::string, Item> pending_;
  std::vector<std::string> order_;     // arrival order of pending_ keys
  std::map<std::string, Sent> sent_;   // decisions awaiting the relay's verdict
  std::set<std::string> auto_tried_;   // --auto decides an id once
  std::deque<Held> held_;              // stdin decisions waiting for their interrupt
  std::vector<HitlEffect> effects_;
};

}  // namespace smws
