// hitl-approve: options, and the Approver that runs on the UI thread.
//
// Threads: the Connection's reader thread reads the socket at all times (it
// answers pings while the prompt waits, the editor runs or a message is
// typed) and posts HITL messages to the connection's inbox. Everything else
// (the pending list, the prompt, stdin, decisions) belongs to the UI thread,
// the one that calls run_hitl_approve(): it polls the inbox, stdin and the
// shutdown pipe, so no state here needs a lock.
#include "hitl_approve.h"

#include <fnmatch.h>
#include <poll.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "connection.h"
#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/log.h"
#include "smws/shutdown.h"
#include "terminal.h"

namespace smws {

using nlohmann::json;
using hitl_approve::Connection;
using hitl_approve::ConnectOptions;
using hitl_approve::ConnectResult;
using hitl_approve::Inbound;
using hitl_approve::out;
using Clock = std::chrono::steady_clock;

namespace {

std::string default_identity() {
  std::string user;
  if (const char* env = std::getenv("USER"); env && *env) user = env;
  else if (const passwd* pw = ::getpwuid(::getuid())) user = pw->pw_name;
  else user = "uid" + std::to_string(::getuid());
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || !*host) return user;
  return user + "@" + host;
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

Clock::time_point after(Clock::time_point t, double seconds) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string id_of(const json& message) {
  auto it = message.find("interrupt_id");
  return it != message.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& actions_of(const json& interrupt) {
  static const json empty = json::array();
  auto it = interrupt.find("action_requests");
  return it != interrupt.end() && it->is_array() ? *it : empty;
}

std::string action_names(const json& interrupt) {
  std::string names;
  for (const auto& action : actions_of(interrupt)) {
    if (!names.empty()) names += ", ";
    names += action.value("name", std::string("?"));
  }
  return names;
}

// "approve", or "reject, approve" for a decision on several actions.
std::string verbs_of(const json& decision) {
  std::string verbs;
  auto entries = decision.find("decisions");
  if (entries != decision.end() && entries->is_array()) {
    for (const auto& entry : *entries) {
      if (!entry.is_object() || !entry.contains("type") || !entry["type"].is_string()) continue;
      if (!verbs.empty()) verbs += ", ";
      verbs += entry["type"].get<std::string>();
    }
  }
  return verbs.empty() ? "decided" : verbs;
}

// In stdin mode, after the input ended, the relay's answer to the last
// decisions is awaited this long; it answers at once unless it is gone.
constexpr double kVerdictTimeout = 10.0;

// Reconnect backoff: from 0.5 s doubling to 30 s, with +-20% jitter so that
// many approvers do not hammer a restarted relay in step.
constexpr double kBackoffFirst = 0.5;
constexpr double kBackoffMax = 30.0;

// "About to time out": the last quarter of the request's life, at least one
// second and at most 30 (a human needs that long to read and press a key).
double warn_threshold(double timeout) { return std::min(30.0, std::max(1.0, timeout / 4)); }

// kInteractive: stdin is a TTY (keys); kStdin: NDJSON decisions from stdin or
// --decisions FILE; kAutoOnly: --auto without a TTY, stdin untouched.
enum class Mode { kInteractive, kStdin, kAutoOnly };

// The UI thread's whole state: the relay's pending interrupts as last seen
// (pending_, in arrival order in order_), the decisions sent and not yet
// confirmed by the relay's broadcast or refused by its error (sent_), and the
// prompt. The relay is the authority: an interrupt leaves pending_ only when
// a decision or timeout for it is broadcast, or a snapshot no longer lists it.
class Approver {
 public:
  Approver(const HitlApproveOptions& options, Mode mode, int input_fd)
      : options_(options), mode_(mode), input_fd_(input_fd) {
    style_.colour = mode == Mode::kInteractive && ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
  }

  int run();

 private:
  struct Item {
    json interrupt;
    Clock::time_point deadline;
    double timeout = 0;
    bool warned = false;
    bool skipped = false;
  };
  enum class Source { kPrompt, kAuto, kStdin };
  struct Sent {
    json decision;
    Source source;
    long line = 0;
  };

  // Connection.
  int connect_first();
  bool reconnect(const std::string& why);
  bool send(const json& message);

  // Messages from the relay.
  void handle(const json& message);
  void on_snapshot(const json& message);
  void on_interrupt(const json& interrupt, std::optional<double> expires_in);
  void on_decision(const json& decision);
  void on_error(const json& error);
  void withdraw(const std::string& id, const std::string& why);
  bool is_ours(const json& decision) const;
  void drain_inbox();

  // Auto decisions.
  bool auto_applies(const json& interrupt) const;
  void try_auto(const std::string& id);

  // Stdin decisions.
  void read_input();
  void handle_line(const std::string& line);

  // Interactive prompt.
  void maybe_prompt();
  void show_current();
  std::string prompt_line() const;
  void handle_key(char key);
  void decide_current(json entry);
  std::optional<json> edit_action(const json& action);
  void notice(const std::string& text);
  void tick();
  bool current_pending() const { return !current_.empty() && pending_.count(current_); }
  std::vector<std::string> current_allowed() const;

  void finish(int code) {
    done_ = true;
    exit_code_ = code;
  }
  void accepted_one() {
    ++accepted_;
    if (options_.once) finish(kExitOk);
  }

  const HitlApproveOptions& options_;
  Mode mode_;
  int input_fd_;
  hitl_approve::Style style_;
  std::unique_ptr<Connection> conn_;
  std::string as_;

  std::map<std::string, Item> pending_;
  std::vector<std::string> order_;  // arrival order of pending_ keys
  std::map<std::string, Sent> sent_;  // decisions awaiting the relay's verdict
  std::set<std::string> auto_tried_;
  bool got_snapshot_ = false;

  // Interactive state.
  std::unique_ptr<hitl_approve::RawMode> raw_;
  std::string current_;
  std::size_t action_index_ = 0;
  json collected_ = json::array();
  bool prompt_visible_ = false;
  bool idle_shown_ = false;

  // Stdin state.
  std::string input_buffer_;
  long line_number_ = 0;
  bool input_eof_ = false;
  Clock::time_point eof_at_;
  int bad_lines_ = 0;

  int accepted_ = 0;
  bool done_ = false;
  int exit_code_ = kExitOk;
};

int Approver::connect_first() {
  ConnectOptions connect{options_.url, options_.token, options_.insecure, options_.connect_timeout};
  ConnectResult result;
  conn_ = Connection::open(connect, &result);
  if (conn_) {
    log::note(1, "connected to " + options_.url + " as " + conn_->local_address());
    return kExitOk;
  }
  log::error(result.error);
  switch (result.code) {
    case ConnectResult::kDenied: return kExitNoPerm;
    case ConnectResult::kBadUrl: return kExitUsage;
    default: return kExitUnavailable;
  }
}

bool Approver::reconnect(const std::string& why) {
  notice(style_.yellow("connection lost: " + why));
  prompt_visible_ = false;
  current_.clear();  // asked again from the new snapshot
  conn_.reset();
  got_snapshot_ = false;
  if (options_.no_reconnect) {
    log::error("connection to " + options_.url + " lost: " + why);
    finish(kExitUnavailable);
    return false;
  }
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  double delay = kBackoffFirst;
  while (!shutdown::requested()) {
    double wait = delay * jitter(rng);
    log::note(1, "reconnecting in " + std::to_string(wait).substr(0, 4) + " s");
    pollfd fd{shutdown::fd(), POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(wait * 1000)) > 0) break;
    ConnectOptions connect{options_.url, options_.token, options_.insecure, options_.connect_timeout};
    ConnectResult result;
    conn_ = Connection::open(connect, &result);
    if (conn_) {
      notice(style_.green("reconnected to " + options_.url));
      idle_shown_ = false;  // the new snapshot decides what is shown next
      return true;
    }
    log::warn("reconnect: " + result.error);
    delay = std::min(kBackoffMax, delay * 2);
  }
  finish(kExitOk);
  return false;
}

bool Approver::send(const json& message) {
  if (!conn_) return false;
  std::string error;
  if (conn_->send_text(message.dump(), error)) return true;
  log::warn("cannot send: " + error);
  return false;
}

void Approver::drain_inbox() {
  while (conn_ && !done_) {
    auto items = conn_->take();
    if (conn_->take_overflow()) {
      log::warn("messages from the relay came faster than they were handled; asking for a fresh snapshot");
      send(json{{"type", "refresh"}});
    }
    if (items.empty()) return;
    for (auto& item : items) {
      if (item.kind == Inbound::kClosed) {
        if (!reconnect(item.why)) return;
        break;  // the old connection's remaining items are stale
      }
      try {
        handle(item.message);
      } catch (const json::exception& e) {
        // A relay (or something posing as one) sent a field of the wrong
        // type: skip that message, keep the rest.
        log::warn("ignoring a message from the relay: " + std::string(e.what()));
      }
      if (done_) return;
    }
  }
}

void Approver::handle(const json& message) {
  const std::string type = message.value("type", std::string());
  if (type == "initial") on_snapshot(message);
  else if (type == "interrupt") on_interrupt(message, std::nullopt);
  else if (type == "decision") on_decision(message);
  else if (type == "error") on_error(message);
  else if (type == "gap" || type == "dropped") {
    // Something may have been missed: start again from a fresh snapshot.
    log::note(1, "relay reported " + type + "; asking for a fresh snapshot");
    send(json{{"type", "refresh"}});
  }
}

void Approver::on_snapshot(const json& message) {
  std::set<std::string> listed;
  auto pending = message.find("pending");
  if (pending != message.end() && pending->is_array()) {
    for (const auto& interrupt : *pending) {
      std::string id = id_of(interrupt);
      if (id.empty()) continue;
      listed.insert(id);
      std::optional<double> expires_in;
      if (interrupt.contains("expires_in") && interrupt["expires_in"].is_number())
        expires_in = interrupt["expires_in"].get<double>();
      on_interrupt(interrupt, expires_in);
    }
  }
  std::vector<std::string> gone;
  for (const auto& [id, item] : pending_)
    if (!listed.count(id)) gone.push_back(id);
  for (const auto& id : gone) withdraw(id, "no longer pending");
  bool first = !got_snapshot_;
  got_snapshot_ = true;
  if (first) {
    // Decisions sent before a reconnect: resend what is still pending.
    for (auto it = sent_.begin(); it != sent_.end();) {
      if (pending_.count(it->first)) {
        send(it->second.decision);
        ++it;
      } else {
        log::warn(it->first + " was resolved while disconnected; its outcome is not known here");
        it = sent_.erase(it);
      }
    }
  }
  if (mode_ == Mode::kInteractive) maybe_prompt();
}

void Approver::on_interrupt(const json& interrupt, std::optional<double> expires_in) {
  std::string id = id_of(interrupt);
  if (id.empty()) return;
  if (pending_.count(id)) return;  // already known (snapshot then history)
  // The UI relies on this shape (ws-relay checks it too): anything else is
  // skipped here rather than half-shown.
  const json& actions = actions_of(interrupt);
  bool well_formed = !actions.empty();
  for (const auto& action : actions)
    if (!action.is_object() || !action.contains("name") || !action["name"].is_string()) well_formed = false;
  if (!well_formed) {
    log::warn(id + ": ignoring an interrupt without well-formed action_requests");
    return;
  }
  Item item;
  item.interrupt = interrupt;
  item.interrupt.erase("expires_in");
  item.timeout = kHitlDefaultTimeout;
  if (interrupt.contains("timeout") && interrupt["timeout"].is_number()) item.timeout = interrupt["timeout"].get<double>();
  item.deadline = after(Clock::now(), expires_in ? *expires_in : item.timeout);
  pending_[id] = std::move(item);
  order_.push_back(id);
  if (auto_applies(pending_[id].interrupt)) {
    try_auto(id);
    return;
  }
  if (mode_ == Mode::kInteractive && got_snapshot_) {
    if (!current_.empty()) {
      notice(style_.cyan("+ new request " + id + " (" + action_names(pending_[id].interrupt) + ") queued, " +
                         std::to_string(pending_.size()) + " pending"));
    }
    maybe_prompt();
  } else if (mode_ == Mode::kAutoOnly) {
    log::note(1, id + " (" + action_names(pending_[id].interrupt) + ") does not match --match; left for others");
  }
}

bool Approver::is_ours(const json& decision) const {
  if (!conn_) return false;
  auto client = decision.find("client");
  if (client != decision.end() && client->is_string() && !conn_->local_address().empty())
    return client->get<std::string>() == conn_->local_address();
  return decision.value("decided_by", std::string()) == as_;
}

void Approver::on_decision(const json& decision) {
  std::string id = id_of(decision);
  if (id.empty()) return;
  auto sent = sent_.find(id);
  if (sent != sent_.end() && is_ours(decision)) {
    Source source = sent->second.source;
    sent_.erase(sent);
    pending_.erase(id);
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    if (mode_ == Mode::kInteractive && source != Source::kStdin) {
      notice(style_.green("sent: " + id + " " + verbs_of(decision) + (source == Source::kAuto ? " (--auto)" : "")));
    } else {
      out(decision.dump() + "\n");
    }
    accepted_one();
    if (mode_ == Mode::kInteractive && !done_) maybe_prompt();
    return;
  }
  if (!pending_.count(id)) return;
  std::string why;
  if (decision.value("timed_out", false)) {
    why = "timed out";
  } else {
    std::string who = decision.value("decided_by", std::string());
    if (who.empty()) who = decision.value("client", std::string("someone else"));
    why = verbs_of(decision) + " by " + who;
  }
  withdraw(id, why);
}

void Approver::on_error(const json& error) {
  std::string id = id_of(error);
  std::string text = error.value("error", std::string("error"));
  if (error.contains("reason") && error["reason"].is_string()) text += " (" + error["reason"].get<std::string>() + ")";
  auto sent = sent_.find(id);
  if (id.empty() || sent == sent_.end()) {
    log::warn("relay: " + text + (id.empty() ? "" : " [" + id + "]"));
    return;
  }
  Sent refused = sent->second;
  sent_.erase(sent);
  bool not_pending = error.value("error", std::string()) == "not pending";
  if (refused.source == Source::kStdin) {
    log::error((refused.line ? "line " + std::to_string(refused.line) + ": " : std::string()) + id +
               ": refused: " + text);
    ++bad_lines_;
  } else if (mode_ == Mode::kInteractive) {
    notice(style_.red("refused: " + id + ": " + text));
  } else {
    log::warn(id + ": refused: " + text);
  }
  if (not_pending) {
    withdraw(id, "not pending");
  } else if (mode_ == Mode::kInteractive && refused.source == Source::kPrompt) {
    maybe_prompt();  // still pending: it will be asked again
  }
}

void Approver::withdraw(const std::string& id, const std::string& why) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  std::string names = action_names(it->second.interrupt);
  pending_.erase(it);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
  if (mode_ == Mode::kInteractive) {
    bool was_current = current_ == id;
    notice(style_.yellow("- " + id + " (" + names + ") withdrawn: " + why));
    if (was_current) {
      current_.clear();
      prompt_visible_ = false;
      maybe_prompt();
    }
  } else {
    log::note(1, id + " withdrawn: " + why);
  }
}

bool Approver::auto_applies(const json& interrupt) const {
  if (options_.auto_decision.empty()) return false;
  const json& actions = actions_of(interrupt);
  if (actions.empty()) return false;
  for (const auto& action : actions) {
    std::string name = action.value("name", std::string());
    bool matched = options_.match.empty();
    for (const auto& glob : options_.match)
      if (::fnmatch(glob.c_str(), name.c_str(), 0) == 0) matched = true;
    if (!matched) return false;
    auto allowed = allowed_decisions(interrupt, name);
    if (std::find(allowed.begin(), allowed.end(), options_.auto_decision) == allowed.end()) return false;
  }
  return true;
}

void Approver::try_auto(const std::string& id) {
  if (auto_tried_.count(id) || sent_.count(id)) return;
  auto_tried_.insert(id);
  const json& interrupt = pending_[id].interrupt;
  json short_form = {{"interrupt_id", id}, {"type", options_.auto_decision}};
  if (options_.auto_decision == "reject") short_form["message"] = "rejected by hitl-approve --auto";
  std::string error;
  auto full = expand_decision(interrupt, short_form, as_, error);
  if (!full) {
    log::warn(id + ": " + error);
    return;
  }
  // Kept even when the send failed: the socket is then broken, and after the
  // reconnect the decision is sent again if its interrupt is still pending.
  sent_[id] = Sent{*full, Source::kAuto, 0};
  send(*full);
}

void Approver::read_input() {
  char buffer[4096];
  ssize_t n = ::read(input_fd_, buffer, sizeof(buffer));
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    log::error("reading decisions: " + log::errno_text(errno));
    n = 0;
  }
  if (n == 0) {
    if (!input_buffer_.empty()) handle_line(input_buffer_);
    input_buffer_.clear();
    input_eof_ = true;
    eof_at_ = Clock::now();
    return;
  }
  input_buffer_.append(buffer, static_cast<std::size_t>(n));
  std::size_t start = 0, newline;
  while ((newline = input_buffer_.find('\n', start)) != std::string::npos) {
    handle_line(input_buffer_.substr(start, newline - start));
    start = newline + 1;
  }
  input_buffer_.erase(0, start);
}

void Approver::handle_line(const std::string& raw) {
  ++line_number_;
  std::string where = "line " + std::to_string(line_number_) + ": ";
  std::string line = raw;
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return;
  json short_form = json::parse(line, nullptr, false);
  if (short_form.is_discarded() || !short_form.is_object()) {
    log::error(where + "not a JSON object");
    ++bad_lines_;
    return;
  }
  std::string id = id_of(short_form);
  if (id.empty()) {
    log::error(where + "needs a string interrupt_id");
    ++bad_lines_;
    return;
  }
  if (sent_.count(id)) {
    log::error(where + "a decision for " + id + " was already sent");
    ++bad_lines_;
    return;
  }
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    log::error(where + id + " is not pending");
    ++bad_lines_;
    return;
  }
  std::string error;
  auto full = expand_decision(it->second.interrupt, short_form, as_, error);
  if (!full) {
    log::error(where + id + ": " + error);
    ++bad_lines_;
    return;
  }
  sent_[id] = Sent{*full, Source::kStdin, line_number_};  // resent after a reconnect if need be
  send(*full);
}

// --- interactive -----------------------------------------------------------

std::vector<std::string> Approver::current_allowed() const {
  const json& interrupt = pending_.at(current_).interrupt;
  const json& actions = actions_of(interrupt);
  if (action_index_ >= actions.size()) return {};
  return allowed_decisions(interrupt, actions[action_index_].value("name", std::string()));
}

void Approver::maybe_prompt() {
  if (mode_ != Mode::kInteractive || done_ || !conn_ || !got_snapshot_) return;
  if (current_pending()) return;
  current_.clear();
  std::size_t skipped = 0;
  for (const auto& id : order_) {
    const Item& item = pending_.at(id);
    if (sent_.count(id) || auto_tried_.count(id)) continue;
    if (item.skipped) {
      ++skipped;
      continue;
    }
    current_ = id;
    action_index_ = 0;
    collected_ = json::array();
    idle_shown_ = false;
    show_current();
    return;
  }
  if (!idle_shown_) {
    idle_shown_ = true;
    std::string text = style_.dim("waiting for approval requests");
    if (skipped) text += style_.dim(" (" + std::to_string(skipped) + " skipped: [v] to view them again)");
    out(text + style_.dim(" [q]uit") + "\n");
  }
}

void Approver::show_current() {
  const Item& item = pending_.at(current_);
  const json& interrupt = item.interrupt;
  const json& actions = actions_of(interrupt);
  std::string text = "\n" + style_.bold("── approval request " + current_);
  if (interrupt.contains("thread_id") && interrupt["thread_id"].is_string())
    text += style_.bold(" · thread " + interrupt["thread_id"].get<std::string>());
  std::size_t waiting = 0;
  for (const auto& [id, other] : pending_)
    if (!sent_.count(id) && !auto_tried_.count(id)) ++waiting;
  text += style_.dim(" · " + std::to_string(waiting) + " pending") + "\n";
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const json& action = actions[i];
    std::string name = action.value("name", std::string("?"));
    text += (actions.size() > 1 ? std::to_string(i + 1) + ". " : std::string()) + style_.cyan(style_.bold(name));
    if (action.contains("description") && action["description"].is_string())
      text += " — " + action["description"].get<std::string>();
    text += "\n";
    json args = action.contains("args") ? action["args"] : json::object();
    std::string pretty = args.dump(2, ' ', false, json::error_handler_t::replace);
    std::string indented = "    ";
    for (char c : pretty) {
      indented += c;
      if (c == '\n') indented += "    ";
    }
    text += indented + "\n";
    text += style_.dim("    allowed: ");
    auto allowed = allowed_decisions(interrupt, name);
    for (std::size_t k = 0; k < allowed.size(); ++k) text += (k ? ", " : "") + allowed[k];
    text += "\n";
  }
  double left = seconds_between(Clock::now(), item.deadline);
  text += style_.dim("    times out in " + hitl_approve::format_duration(left)) + "\n";
  out(text);
  prompt_visible_ = true;
  out(prompt_line());
}

std::string Approver::prompt_line() const {
  if (!current_pending()) return "";
  const Item& item = pending_.at(current_);
  const json& actions = actions_of(item.interrupt);
  std::string line = "\r\033[K";
  if (actions.size() > 1)
    line += style_.bold("action " + std::to_string(action_index_ + 1) + "/" + std::to_string(actions.size()) + " " +
                        actions[action_index_].value("name", std::string("?"))) + ": ";
  auto allowed = current_allowed();
  auto has = [&](const char* type) { return std::find(allowed.begin(), allowed.end(), type) != allowed.end(); };
  if (has("approve")) line += "[a]pprove ";
  if (has("edit")) line += "[e]dit ";
  if (has("reject")) line += "[r]eject ";
  line += "[s]kip [q]uit ";
  double left = seconds_between(Clock::now(), item.deadline);
  std::string countdown = "(" + hitl_approve::format_duration(left) + " left)";
  line += left <= warn_threshold(item.timeout) ? style_.red(countdown + " !") : style_.dim(countdown);
  return line + " ";
}

void Approver::notice(const std::string& text) {
  if (mode_ != Mode::kInteractive) {
    log::note(1, text);
    return;
  }
  if (prompt_visible_) out("\r\033[K");
  out(text + "\n");
  if (prompt_visible_) out(prompt_line());
}

void Approver::tick() {
  auto now = Clock::now();
  for (auto& [id, item] : pending_) {
    if (item.warned || sent_.count(id)) continue;
    double left = seconds_between(now, item.deadline);
    if (left <= warn_threshold(item.timeout)) {
      item.warned = true;
      if (mode_ == Mode::kInteractive)
        notice(style_.red("! " + id + " (" + action_names(item.interrupt) + ") times out in " +
                          hitl_approve::format_duration(left)));
    }
  }
  // Redraw the countdown.
  if (prompt_visible_ && current_pending()) out(prompt_line());
}

void Approver::handle_key(char key) {
  if (key == 'q' || key == 'Q' || key == 4 /* Ctrl-D */) {
    if (prompt_visible_) out("\n");
    prompt_visible_ = false;
    finish(kExitOk);
    return;
  }
  if (!current_pending()) {
    if (key == 'v' || key == 'V') {
      for (auto& [id, item] : pending_) item.skipped = false;
      idle_shown_ = false;
      maybe_prompt();
    }
    return;
  }
  auto allowed = current_allowed();
  auto has = [&](const char* type) { return std::find(allowed.begin(), allowed.end(), type) != allowed.end(); };
  const json& actions = actions_of(pending_.at(current_).interrupt);
  std::string id = current_;
  switch (key) {
    case 'a':
    case 'A':
      if (!has("approve")) break;
      out("approve\n");
      prompt_visible_ = false;
      decide_current(json{{"type", "approve"}});
      return;
    case 'r':
    case 'R': {
      if (!has("reject")) break;
      out("reject\n");
      prompt_visible_ = false;
      out("message (Enter for none): ");
      if (raw_) raw_->suspend();
      auto message = hitl_approve::read_line(STDIN_FILENO);
      if (raw_) raw_->resume();
      drain_inbox();  // what arrived while the message was typed
      if (done_ || shutdown::requested()) return;
      if (!message) {
        finish(kExitOk);
        return;
      }
      if (current_ != id || !pending_.count(id)) return;  // withdrawn meanwhile: notice shown
      json entry = {{"type", "reject"}};
      if (!message->empty()) entry["message"] = *message;
      decide_current(entry);
      return;
    }
    case 'e':
    case 'E': {
      if (!has("edit")) break;
      out("edit\n");
      prompt_visible_ = false;
      auto edited = edit_action(actions[action_index_]);
      drain_inbox();
      if (done_ || shutdown::requested()) return;
      if (current_ != id || !pending_.count(id)) return;
      if (!edited) {
        prompt_visible_ = true;
        out(prompt_line());
        return;
      }
      decide_current(json{{"type", "edit"}, {"edited_action", *edited}});
      return;
    }
    case 's':
    case 'S':
      out("skip\n");
      prompt_visible_ = false;
      pending_.at(current_).skipped = true;
      current_.clear();
      maybe_prompt();
      return;
    default:
      break;
  }
  // A key that means nothing here: ring the bell and keep the prompt.
  out("\a");
}

std::optional<json> Approver::edit_action(const json& action) {
  json editable = {{"name", action.value("name", std::string())},
                   {"args", action.contains("args") ? action["args"] : json::object()}};
  std::string text = editable.dump(2) + "\n";
  while (true) {
    if (raw_) raw_->suspend();
    std::string error;
    auto edited = hitl_approve::edit_text(text, error);
    if (raw_) raw_->resume();
    if (!edited) {
      notice(style_.red("edit: " + error));
      return std::nullopt;
    }
    text = *edited;
    json parsed = json::parse(text, nullptr, false);
    std::string problem;
    if (parsed.is_discarded()) problem = "not valid JSON";
    else problem = check_edited_action(parsed);
    if (problem.empty()) return parsed;
    out(style_.red("the edited action " + problem) + "\n[e]dit again or [c]ancel? ");
    while (true) {
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {shutdown::fd(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return std::nullopt;
      }
      if (fds[1].revents) return std::nullopt;
      char key = 0;
      if (::read(STDIN_FILENO, &key, 1) <= 0) return std::nullopt;
      if (key == 'e' || key == 'E') {
        out("edit\n");
        break;
      }
      if (key == 'c' || key == 'C' || key == 'q' || key == 4) {
        out("cancel\n");
        return std::nullopt;
      }
    }
  }
}

void Approver::decide_current(json entry) {
  collected_.push_back(std::move(entry));
  const Item& item = pending_.at(current_);
  if (collected_.size() < actions_of(item.interrupt).size()) {
    ++action_index_;
    prompt_visible_ = true;
    out(prompt_line());
    return;
  }
  json decision = {{"type", "decision"}, {"interrupt_id", current_}, {"decisions", collected_}};
  if (item.interrupt.contains("thread_id") && item.interrupt["thread_id"].is_string())
    decision["thread_id"] = item.interrupt["thread_id"];
  decision["decided_by"] = as_;
  std::string id = current_;
  current_.clear();
  sent_[id] = Sent{decision, Source::kPrompt, 0};  // resent after a reconnect if need be
  send(decision);
  maybe_prompt();
}

int Approver::run() {
  as_ = options_.as.empty() ? default_identity() : options_.as;
  if (int code = connect_first(); code != kExitOk) return code;
  if (mode_ == Mode::kInteractive) {
    raw_ = std::make_unique<hitl_approve::RawMode>(STDIN_FILENO);
    out(style_.dim("hitl-approve: connected to " + options_.url + " as " + as_) + "\n");
  }
  while (!done_) {
    if (shutdown::requested()) {
      if (prompt_visible_) out("\n");
      break;
    }
    std::vector<pollfd> fds;
    fds.push_back({shutdown::fd(), POLLIN, 0});
    if (conn_) fds.push_back({conn_->wake_fd(), POLLIN, 0});
    bool want_input = false;
    if (mode_ == Mode::kInteractive) want_input = true;
    if (mode_ == Mode::kStdin) want_input = conn_ && got_snapshot_ && !input_eof_;
    std::size_t input_index = fds.size();
    if (want_input) fds.push_back({input_fd_, POLLIN, 0});
    int timeout_ms = 1000;
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      log::error(std::string("poll: ") + log::errno_text(errno));
      return kExitSoftware;
    }
    drain_inbox();
    if (done_) break;
    if (want_input && input_index < fds.size() && (fds[input_index].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (mode_ == Mode::kInteractive) {
        char keys[16];
        ssize_t n = ::read(STDIN_FILENO, keys, sizeof(keys));
        if (n == 0) {
          finish(kExitOk);  // the terminal went away
        } else if (n > 0) {
          // Escape sequences (arrow keys) are ignored as a whole.
          if (keys[0] != '\033') handle_key(keys[0]);
        }
      } else {
        read_input();
      }
    }
    if (done_) break;
    if (mode_ == Mode::kStdin && input_eof_) {
      if (sent_.empty()) {
        finish(bad_lines_ ? kExitDataErr : kExitOk);
        break;
      }
      if (seconds_between(eof_at_, Clock::now()) > kVerdictTimeout) {
        for (const auto& [id, sent] : sent_)
          log::error(id + ": no answer from the relay within " + std::to_string(static_cast<int>(kVerdictTimeout)) + " s");
        finish(kExitTempFail);
        break;
      }
    }
    tick();
  }
  raw_.reset();
  if (conn_) conn_->close();
  return exit_code_;
}

// --list: print the snapshot's pending interrupts and exit.
int run_list(const HitlApproveOptions& options) {
  ConnectOptions connect{options.url, options.token, options.insecure, options.connect_timeout};
  ConnectResult result;
  auto conn = Connection::open(connect, &result);
  if (!conn) {
    log::error(result.error);
    return result.code == ConnectResult::kDenied ? kExitNoPerm
           : result.code == ConnectResult::kBadUrl ? kExitUsage
                                                   : kExitUnavailable;
  }
  auto deadline = after(Clock::now(), options.connect_timeout);
  while (!shutdown::requested()) {
    int left_ms = static_cast<int>(seconds_between(Clock::now(), deadline) * 1000);
    if (left_ms <= 0) {
      log::error(options.url + ": no snapshot within " + std::to_string(options.connect_timeout).substr(0, 4) + " s");
      return kExitTempFail;
    }
    pollfd fds[2] = {{conn->wake_fd(), POLLIN, 0}, {shutdown::fd(), POLLIN, 0}};
    ::poll(fds, 2, left_ms);
    for (auto& item : conn->take()) {
      if (item.kind == Inbound::kClosed) {
        log::error(options.url + ": " + item.why + " before the snapshot");
        return kExitUnavailable;
      }
      if (item.message.value("type", std::string()) != "initial") continue;
      std::string lines;
      if (item.message.contains("pending") && item.message["pending"].is_array())
        for (const auto& interrupt : item.message["pending"]) lines += interrupt.dump() + "\n";
      out(lines);
      conn->close();
      return kExitOk;
    }
  }
  return kExitOk;
}

}  // namespace

void setup_hitl_approve(CLI::App& app, HitlApproveOptions& options) {
  app.add_option("URL", options.url, "ws-relay's WebSocket URL, e.g. ws://127.0.0.1:3002/ws/events")->required();
  app.add_option("--as", options.as, "Name sent as decided_by (default: $USER@host)");
  app.add_option("--auto", options.auto_decision, "Decide matching requests without asking")
      ->check(CLI::IsMember({"approve", "reject"}));
  app.add_option("--match", options.match, "With --auto: only actions whose name matches GLOB (repeatable)")
      ->type_name("GLOB");
  app.add_flag("--list", options.list, "Print pending requests as NDJSON and exit");
  app.add_flag("--once", options.once, "Exit after one decision was accepted");
  app.add_option("--decisions", options.decisions,
                 "Read NDJSON decisions from FILE ('-': stdin; the default without a TTY)")
      ->type_name("FILE");
  app.add_flag("--no-reconnect", options.no_reconnect, "Exit 69 when the connection drops");
  app.add_option("--token", options.token, "Send 'Authorization: Bearer TOKEN'")->envname("WS_RELAY_TOKEN");
  app.add_flag("--insecure", options.insecure, "wss: do not verify the server's certificate");
  app.add_option("--connect-timeout", options.connect_timeout, "Seconds for connect and handshake (default 10)")
      ->check(kSeconds);
  add_common_flags(app, options.common);
}

int run_hitl_approve(const HitlApproveOptions& options) {
  log::init("hitl-approve", options.common.verbosity());
  if (!options.match.empty() && options.auto_decision.empty()) {
    log::error("--match needs --auto approve|reject");
    return kExitUsage;
  }
  if (options.list && (!options.auto_decision.empty() || !options.decisions.empty() || options.once)) {
    log::error("--list cannot be combined with --auto, --decisions or --once");
    return kExitUsage;
  }
  if (options.connect_timeout <= 0) {
    log::error("--connect-timeout must be more than 0");
    return kExitUsage;
  }
  if (options.list) return run_list(options);

  Mode mode;
  int input_fd = STDIN_FILENO;
  int opened_fd = -1;
  if (!options.decisions.empty()) {
    mode = Mode::kStdin;
    if (options.decisions != "-") {
      opened_fd = ::open(options.decisions.c_str(), O_RDONLY | O_CLOEXEC);
      if (opened_fd < 0) {
        log::error(options.decisions + ": " + log::errno_text(errno));
        return errno == ENOENT ? kExitNoInput : kExitIoErr;
      }
      input_fd = opened_fd;
    }
  } else if (::isatty(STDIN_FILENO)) {
    mode = Mode::kInteractive;
  } else if (!options.auto_decision.empty()) {
    mode = Mode::kAutoOnly;
  } else {
    mode = Mode::kStdin;
  }
  Approver approver(options, mode, input_fd);
  int code = approver.run();
  if (opened_fd >= 0) ::close(opened_fd);
  return code;
}

}  // namespace smws
