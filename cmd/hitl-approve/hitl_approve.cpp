// SPDX-License-Identifier: Apache-2.0
// hitl-approve: options, and the Approver, the terminal side of the tool.
//
// Threads: the connection's reader thread (net::WsClientThread) reads the
// socket at all times — it answers pings while the prompt waits, the editor
// runs or a message is typed — and posts the relay's HITL messages to a
// bounded inbox. Everything else belongs to the UI thread, the one that calls
// run_hitl_approve(): it polls the inbox, stdin and the shutdown pipe, feeds
// what arrives to the approval queue (smws::HitlClient, pure logic) and acts
// on the effects it returns: send, show, print. No state here needs a lock.
#include "hitl_approve.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/hitl_client.h"
#include "smws/log.h"
#include "smws/ndjson.h"
#include "smws/net/ws_client_thread.h"
#include "smws/shutdown.h"
#include "smws/status.h"
#include "smws/terminal_text.h"
#include "terminal.h"

namespace smws {

using nlohmann::json;
using hitl_approve::out;
using net::WsClientThread;
using net::WsInbound;
using Kind = HitlEffect::Kind;

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

// In stdin mode, after the input ended, the relay's answer to the last
// decisions is awaited this long; it answers at once unless it is gone.
constexpr double kVerdictTimeout = 10.0;

// Reconnect backoff: from 0.5 s doubling to 30 s, with +-20% jitter so that
// many approvers do not hammer a restarted relay in step.
constexpr double kBackoffFirst = 0.5;
constexpr double kBackoffMax = 30.0;

// The largest message taken from the relay: a snapshot with many machines
// and pending interrupts is the big one; 64 MiB is far above it.
constexpr std::size_t kMaxRelayMessage = 64 << 20;

// The longest decision line read from stdin or --decisions FILE. A decision
// is a few hundred bytes; an edited action's args could be large, 1 MiB is
// the relay's own default --max-message.
constexpr std::size_t kMaxDecisionLine = 1 << 20;

// The UI thread waits at most this long in one poll, so the countdown on
// the prompt is redrawn every second.
constexpr int kTickMs = 1000;

// One connection attempt to options.url. Errors: kUsage for a URL that is
// not ws:// or wss://, kPermission when the relay refuses the token (401 or
// 403), kUnavailable for everything else (DNS, connect, TLS, a refusal).
Status connect(const HitlApproveOptions& options, std::unique_ptr<WsClientThread>* connection) {
  std::string error;
  auto url = net::parse_ws_url(options.url, &error);
  if (!url) return Status::Error(Status::kUsage, error);
  net::WsClientOptions client;
  client.connect_timeout_s = options.connect_timeout;
  client.insecure = options.insecure;
  client.max_message = kMaxRelayMessage;
  client.headers = {{"User-Agent", "hitl-approve"}};
  if (!options.token.empty()) client.headers.emplace_back("Authorization", "Bearer " + options.token);
  net::WsClientThreadOptions reader;
  reader.peer_name = "the relay";
  reader.filter = [](std::string_view text, std::string* reply) {
    switch (classify_relay_text(text)) {
      case HitlRelayText::kKeep:
        return true;
      case HitlRelayText::kAppPing:
        *reply = R"({"type":"pong"})";
        return false;
      case HitlRelayText::kDrop:
        break;
    }
    return false;
  };
  net::HandshakeInfo info;
  *connection = WsClientThread::open(*url, client, std::move(reader), &info);
  if (*connection) return Status::Ok();
  if (info.status == 401 || info.status == 403)
    return Status::Error(Status::kPermission, options.url + ": handshake refused with " + info.error);
  if (info.outcome == net::HandshakeInfo::Outcome::kRefused)
    return Status::Error(Status::kUnavailable, options.url + ": handshake refused: " + info.error);
  return Status::Error(Status::kUnavailable, options.url + ": " + info.error);
}

// kInteractive: stdin is a TTY (keys); kStdin: NDJSON decisions from stdin or
// --decisions FILE; kAutoOnly: --auto without a TTY, stdin untouched.
enum class Mode { kInteractive, kStdin, kAutoOnly };

// The terminal around a HitlClient: the connection, the prompt, stdin.
class Approver {
 public:
  Approver(const HitlApproveOptions& options, Mode mode, int input_fd)
      : options_(options),
        mode_(mode),
        input_fd_(input_fd),
        client_(HitlClientOptions{options.as.empty() ? default_identity() : options.as, options.auto_decision,
                                  options.match, kHitlHoldTimeout}),
        as_(options.as.empty() ? default_identity() : options.as) {
    style_.colour = mode == Mode::kInteractive && ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
  }

  int run();

 private:
  // Connection.
  int connect_first();
  bool reconnect(const std::string& why);
  bool wait_before_retry(double seconds);
  bool send(const json& message);
  void drain_inbox();

  // What the approval queue asks for.
  void apply_effects();
  void apply(const HitlEffect& effect);

  // Stdin decisions.
  void read_input();

  // Interactive prompt.
  void maybe_prompt();
  void show_current();
  std::string prompt_line() const;
  void handle_key(char key);
  void decide_current(json entry);
  std::optional<json> edit_action(const json& action);
  void notice(const std::string& text);
  void tick();
  bool current_pending() const { return !current_.empty() && client_.find(current_) != nullptr; }
  std::vector<std::string> current_allowed() const;

  void finish(int code) {
    done_ = true;
    exit_code_ = code;
  }

  const HitlApproveOptions& options_;
  Mode mode_;
  int input_fd_;
  hitl_approve::Style style_;
  std::unique_ptr<WsClientThread> conn_;
  HitlClient client_;
  std::string as_;

  // Interactive state.
  std::unique_ptr<hitl_approve::RawMode> raw_;
  std::string current_;
  std::size_t action_index_ = 0;
  json collected_ = json::array();
  bool prompt_visible_ = false;
  bool idle_shown_ = false;

  // Stdin state.
  std::unique_ptr<ndjson::LineReader> input_;
  bool input_eof_ = false;
  double eof_at_ = 0;
  int bad_lines_ = 0;

  bool done_ = false;
  int exit_code_ = kExitOk;
};

int Approver::connect_first() {
  Status status = connect(options_, &conn_);
  if (!status.ok()) {
    log::error(terminal_safe_line(status.message));
    return exit_code_for(status);
  }
  client_.on_connected(conn_->local_address());
  log::note(1, "connected to " + options_.url + " as " + conn_->local_address());
  return kExitOk;
}

// Waits before the next reconnect attempt. False when the wait was cut short
// to stop: a signal, or (at the prompt) q or Ctrl-D, or the terminal gone.
bool Approver::wait_before_retry(double seconds) {
  double until = monotonic_seconds() + seconds;
  for (;;) {
    double left = until - monotonic_seconds();
    if (left <= 0) return true;
    pollfd fds[2] = {{shutdown::fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    nfds_t count = mode_ == Mode::kInteractive ? 2 : 1;
    int ready = ::poll(fds, count, static_cast<int>(left * 1000) + 1);
    if (ready < 0 && errno != EINTR) return false;
    if (fds[0].revents) return false;
    if (count == 2 && fds[1].revents) {
      char keys[16];
      ssize_t n = ::read(STDIN_FILENO, keys, sizeof(keys));
      if (n == 0) return false;  // the terminal went away
      for (ssize_t i = 0; i < n; ++i)
        if (keys[i] == 'q' || keys[i] == 'Q' || keys[i] == 4 /* Ctrl-D */) return false;
    }
  }
}

bool Approver::reconnect(const std::string& why) {
  notice(style_.yellow("connection lost: " + terminal_safe_line(why)));
  prompt_visible_ = false;
  current_.clear();  // asked again from the new snapshot
  conn_.reset();
  client_.on_disconnected();
  if (options_.no_reconnect) {
    log::error("connection to " + options_.url + " lost: " + terminal_safe_line(why));
    finish(kExitUnavailable);
    return false;
  }
  if (mode_ == Mode::kInteractive) out(style_.dim("reconnecting; [q]uit") + "\n");
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  double delay = kBackoffFirst;
  while (!shutdown::requested()) {
    double wait = delay * jitter(rng);
    log::note(1, "reconnecting in " + duration_text(wait));
    if (!wait_before_retry(wait)) break;
    Status status = connect(options_, &conn_);
    if (status.ok()) {
      client_.on_connected(conn_->local_address());
      notice(style_.green("reconnected to " + options_.url));
      idle_shown_ = false;  // the new snapshot decides what is shown next
      return true;
    }
    log::warn("reconnect: " + terminal_safe_line(status.message));
    delay = std::min(kBackoffMax, delay * 2);
  }
  finish(kExitOk);
  return false;
}

bool Approver::send(const json& message) {
  if (!conn_) return false;
  if (conn_->send_text(message.dump())) return true;
  log::warn("cannot send: the connection is closed");
  return false;
}

void Approver::drain_inbox() {
  while (conn_ && !done_) {
    auto items = conn_->take();
    if (conn_->take_overflow()) {
      log::warn("messages from the relay came faster than they were handled; asking for a fresh snapshot");
      client_.refresh();
      apply_effects();
    }
    if (items.empty()) return;
    for (auto& item : items) {
      if (item.kind == WsInbound::Kind::kClosed) {
        if (!reconnect(item.why)) return;
        break;  // the old connection's remaining items are stale
      }
      json message = json::parse(item.text, nullptr, false);
      if (!message.is_object()) continue;
      client_.on_message(message, monotonic_seconds());
      apply_effects();
      if (done_) return;
    }
  }
}

void Approver::apply_effects() {
  for (const HitlEffect& effect : client_.take_effects()) {
    apply(effect);
    if (done_) return;
  }
}

void Approver::apply(const HitlEffect& e) {
  const bool interactive = mode_ == Mode::kInteractive;
  // What the relay (or another client) sent, as it may reach a terminal:
  // ids, action names, reasons and decided_by never carry a raw control
  // character. e.id itself stays as it is for the lookups.
  const std::string id = terminal_safe_line(e.id);
  const std::string names = terminal_safe_line(e.names);
  const std::string text = terminal_safe_line(e.text);
  switch (e.kind) {
    case Kind::kSend:
      send(e.message);
      break;
    case Kind::kSnapshot:
      if (interactive) maybe_prompt();
      break;
    case Kind::kQueued:
      if (interactive && e.live) {
        if (!current_.empty())
          notice(style_.cyan("+ new request " + id + " (" + names + ") queued, " +
                             std::to_string(client_.pending_count()) + " pending"));
        maybe_prompt();
      } else if (mode_ == Mode::kAutoOnly) {
        log::note(1, id + " (" + names + ") does not match --match; left for others");
      }
      break;
    case Kind::kAccepted:
      if (interactive && e.source != HitlSource::kStdin) {
        notice(style_.green("sent: " + id + " " + hitl_decision_verbs(e.message) +
                            (e.source == HitlSource::kAuto ? " (--auto)" : "")));
      } else {
        out(e.message.dump(-1, ' ', true, json::error_handler_t::replace) + "\n");
      }
      if (options_.once) {
        finish(kExitOk);
        return;
      }
      if (interactive) maybe_prompt();
      break;
    case Kind::kWithdrawn:
      if (interactive) {
        bool was_current = current_ == e.id;
        notice(style_.yellow("- " + id + " (" + names + ") withdrawn: " + text));
        if (was_current) {
          current_.clear();
          prompt_visible_ = false;
          maybe_prompt();
        }
      } else {
        log::note(1, id + " withdrawn: " + text);
      }
      break;
    case Kind::kRefused:
      if (e.source == HitlSource::kStdin) {
        log::error((e.line ? "line " + std::to_string(e.line) + ": " : std::string()) + id + ": refused: " + text);
        ++bad_lines_;
      } else if (interactive) {
        notice(style_.red("refused: " + id + ": " + text));
        // Still pending: it will be asked again. (A "not pending" refusal
        // is followed by its kWithdrawn.)
        if (e.source == HitlSource::kPrompt && client_.find(e.id)) maybe_prompt();
      } else {
        log::warn(id + ": refused: " + text);
      }
      break;
    case Kind::kLost:
      log::warn(id + " was resolved while disconnected; its outcome is not known here");
      break;
    case Kind::kTimingOut:
      if (interactive)
        notice(style_.red("! " + id + " (" + names + ") times out in " + hitl_approve::format_duration(e.seconds)));
      break;
    case Kind::kLineError:
      log::error("line " + std::to_string(e.line) + ": " + text);
      ++bad_lines_;
      break;
    case Kind::kWarning:
      log::warn(text);
      break;
    case Kind::kNote:
      log::note(1, text);
      break;
  }
}

// One read of the decisions input, then every complete line in it.
void Approver::read_input() {
  auto fill = input_->fill();
  if (fill == ndjson::LineReader::Fill::kError)
    log::error("reading decisions: " + log::errno_text(input_->error()));
  if (fill == ndjson::LineReader::Fill::kCancelled) return;  // shutdown: the loop ends
  ndjson::LineReader::Line line;
  for (;;) {
    auto status = input_->next(&line);
    if (status == ndjson::LineReader::Status::kLine) {
      client_.on_input_line(line.text, static_cast<long>(line.number), monotonic_seconds());
      apply_effects();
      if (done_) return;
    } else if (status == ndjson::LineReader::Status::kTooLong) {
      log::error("line " + std::to_string(line.number) + ": longer than " + std::to_string(kMaxDecisionLine) +
                 " bytes");
      ++bad_lines_;
    } else if (status == ndjson::LineReader::Status::kEof || fill == ndjson::LineReader::Fill::kError) {
      input_eof_ = true;
      eof_at_ = monotonic_seconds();
      return;
    } else {
      return;  // kNeedRead: the rest of the line comes with the next read
    }
  }
}

// --- interactive -----------------------------------------------------------

std::vector<std::string> Approver::current_allowed() const {
  const json& interrupt = client_.find(current_)->interrupt;
  const json& actions = hitl_actions(interrupt);
  if (action_index_ >= actions.size()) return {};
  return allowed_decisions(interrupt, actions[action_index_].value("name", std::string()));
}

void Approver::maybe_prompt() {
  if (mode_ != Mode::kInteractive || done_ || !conn_ || !client_.has_snapshot()) return;
  if (current_pending()) return;
  current_.clear();
  std::size_t skipped = 0;
  if (auto next = client_.next_to_ask(&skipped)) {
    current_ = *next;
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
  const HitlClient::Item& item = *client_.find(current_);
  const json& interrupt = item.interrupt;
  const json& actions = hitl_actions(interrupt);
  // Every field below came from the agent through the relay: shown through
  // terminal_safe, never raw.
  std::string text = "\n" + style_.bold("── approval request " + terminal_safe_line(current_));
  if (interrupt.contains("thread_id") && interrupt["thread_id"].is_string())
    text += style_.bold(" · thread " + terminal_safe_line(interrupt["thread_id"].get<std::string>()));
  text += style_.dim(" · " + std::to_string(client_.waiting_count()) + " pending") + "\n";
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const json& action = actions[i];
    std::string name = action.value("name", std::string("?"));
    text += (actions.size() > 1 ? std::to_string(i + 1) + ". " : std::string()) +
            style_.cyan(style_.bold(terminal_safe_line(name)));
    if (action.contains("description") && action["description"].is_string())
      text += " — " + terminal_safe(action["description"].get<std::string>());
    text += "\n";
    json args = action.contains("args") ? action["args"] : json::object();
    // JSON escapes C0 but keeps C1 and bidi marks as they are.
    std::string pretty = terminal_safe(args.dump(2, ' ', false, json::error_handler_t::replace));
    std::string indented = "    ";
    for (char c : pretty) {
      indented += c;
      if (c == '\n') indented += "    ";
    }
    text += indented + "\n";
    text += style_.dim("    allowed: ");
    auto allowed = allowed_decisions(interrupt, name);
    for (std::size_t k = 0; k < allowed.size(); ++k) text += (k ? ", " : "") + terminal_safe_line(allowed[k]);
    text += "\n";
  }
  double left = item.deadline - monotonic_seconds();
  text += style_.dim("    times out in " + hitl_approve::format_duration(left)) + "\n";
  out(text);
  prompt_visible_ = true;
  out(prompt_line());
}

std::string Approver::prompt_line() const {
  if (!current_pending()) return "";
  const HitlClient::Item& item = *client_.find(current_);
  const json& actions = hitl_actions(item.interrupt);
  std::string line = "\r\033[K";
  if (actions.size() > 1)
    line += style_.bold("action " + std::to_string(action_index_ + 1) + "/" + std::to_string(actions.size()) + " " +
                        terminal_safe_line(actions[action_index_].value("name", std::string("?")))) + ": ";
  auto allowed = current_allowed();
  auto has = [&](const char* type) { return std::find(allowed.begin(), allowed.end(), type) != allowed.end(); };
  if (has("approve")) line += "[a]pprove ";
  if (has("edit")) line += "[e]dit ";
  if (has("reject")) line += "[r]eject ";
  line += "[s]kip [q]uit ";
  double left = item.deadline - monotonic_seconds();
  std::string countdown = "(" + hitl_approve::format_duration(left) + " left)";
  line += left <= hitl_warn_threshold(item.timeout) ? style_.red(countdown + " !") : style_.dim(countdown);
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
  client_.tick(monotonic_seconds());
  apply_effects();
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
      client_.unskip_all();
      idle_shown_ = false;
      maybe_prompt();
    }
    return;
  }
  auto allowed = current_allowed();
  auto has = [&](const char* type) { return std::find(allowed.begin(), allowed.end(), type) != allowed.end(); };
  const json& actions = hitl_actions(client_.find(current_)->interrupt);
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
      if (current_ != id || !client_.find(id)) return;  // withdrawn meanwhile: notice shown
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
      if (current_ != id || !client_.find(id)) return;
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
      client_.find(current_)->skipped = true;
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
  if (collected_.size() < hitl_actions(client_.find(current_)->interrupt).size()) {
    ++action_index_;
    prompt_visible_ = true;
    out(prompt_line());
    return;
  }
  std::string id = current_;
  current_.clear();
  client_.decide(id, std::move(collected_));  // sent again after a reconnect if need be
  collected_ = json::array();
  apply_effects();
  maybe_prompt();
}

int Approver::run() {
  if (int code = connect_first(); code != kExitOk) return code;
  if (mode_ == Mode::kStdin) input_ = std::make_unique<ndjson::LineReader>(input_fd_, kMaxDecisionLine, 64 * 1024,
                                                                         &shutdown::requested);
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
    if (mode_ == Mode::kStdin) want_input = conn_ && client_.has_snapshot() && !input_eof_;
    std::size_t input_index = fds.size();
    if (want_input) fds.push_back({input_fd_, POLLIN, 0});
    int timeout_ms = kTickMs;
    if (auto next = client_.next_tick()) {
      double wait = (*next - monotonic_seconds()) * 1000;
      timeout_ms = std::clamp(static_cast<int>(wait) + 1, 0, kTickMs);
    }
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
    tick();
    if (done_) break;
    if (mode_ == Mode::kStdin && input_eof_) {
      if (!client_.awaiting()) {
        finish(bad_lines_ ? kExitDataErr : kExitOk);
        break;
      }
      if (monotonic_seconds() - eof_at_ > kVerdictTimeout) {
        for (const auto& id : client_.unanswered())
          log::error(id + ": no answer from the relay within " + std::to_string(static_cast<int>(kVerdictTimeout)) + " s");
        finish(kExitTempFail);
        break;
      }
    }
  }
  raw_.reset();
  if (conn_) conn_->close();
  return exit_code_;
}

// --list: print the snapshot's pending interrupts and exit.
int run_list(const HitlApproveOptions& options) {
  std::unique_ptr<WsClientThread> conn;
  Status status = connect(options, &conn);
  if (!status.ok()) {
    log::error(terminal_safe_line(status.message));
    return exit_code_for(status);
  }
  double deadline = monotonic_seconds() + options.connect_timeout;
  while (!shutdown::requested()) {
    double left = deadline - monotonic_seconds();
    if (left <= 0) {
      log::error(options.url + ": no snapshot within " + duration_text(options.connect_timeout));
      return kExitTempFail;
    }
    pollfd fds[2] = {{conn->wake_fd(), POLLIN, 0}, {shutdown::fd(), POLLIN, 0}};
    ::poll(fds, 2, static_cast<int>(left * 1000) + 1);
    for (auto& item : conn->take()) {
      if (item.kind == WsInbound::Kind::kClosed) {
        log::error(options.url + ": " + terminal_safe_line(item.why) + " before the snapshot");
        return kExitUnavailable;
      }
      json message = json::parse(item.text, nullptr, false);
      if (!message.is_object() || message.value("type", json()) != "initial") continue;
      std::string lines;
      if (message.contains("pending") && message["pending"].is_array())
        // ensure_ascii: C0 is escaped by JSON anyway; this also writes C1,
        // bidi marks (\u202e) and every other non-ASCII character as \uXXXX,
        // so the NDJSON stays JSON and is safe on a terminal.
        for (const auto& interrupt : message["pending"])
          lines += interrupt.dump(-1, ' ', true, json::error_handler_t::replace) + "\n";
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
