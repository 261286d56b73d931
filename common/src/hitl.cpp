// SPDX-License-Identifier: Apache-2.0
// HITL pending table and its I/O helpers. Contracts in smws/hitl.h.
#include "smws/hitl.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "smws/clock.h"
#include "smws/event.h"
#include "smws/exit_code.h"
#include "smws/log.h"

namespace smws {

using json = nlohmann::json;

namespace {

constexpr const char* kDecisionTypes[] = {"approve", "edit", "reject"};

bool is_decision_type(const std::string& type) {
  return std::find(std::begin(kDecisionTypes), std::end(kDecisionTypes), type) !=
         std::end(kDecisionTypes);
}

json error_reply(std::string message, const std::string& interrupt_id = {},
                 const char* reason = nullptr) {
  json reply = {{"type", "error"}, {"error", std::move(message)}};
  if (!interrupt_id.empty()) reply["interrupt_id"] = interrupt_id;
  if (reason) reply["reason"] = reason;
  return reply;
}

std::vector<std::string> allowed_for(const json& interrupt, const std::string& name) {
  auto configs = interrupt.find("review_configs");
  if (configs != interrupt.end() && configs->is_array()) {
    for (const auto& config : *configs) {
      if (config.value("action_name", std::string()) != name) continue;
      std::vector<std::string> allowed;
      for (const auto& type : config.at("allowed_decisions")) allowed.push_back(type.get<std::string>());
      return allowed;
    }
  }
  return {std::begin(kDecisionTypes), std::end(kDecisionTypes)};
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out.empty() ? "none" : out;
}

// Validates the parts of an interrupt that decisions depend on.
std::string check_interrupt(const json& event) {
  auto requests = event.find("action_requests");
  if (requests == event.end() || !requests->is_array() || requests->empty())
    return "action_requests must be a non-empty array";
  for (std::size_t i = 0; i < requests->size(); ++i) {
    const auto& request = (*requests)[i];
    if (!request.is_object() || !request.contains("name") || !request["name"].is_string() ||
        request["name"].get_ref<const std::string&>().empty())
      return "action_requests[" + std::to_string(i) + "] must be an object with a non-empty string name";
  }
  auto configs = event.find("review_configs");
  if (configs != event.end() && !configs->is_null()) {
    if (!configs->is_array()) return "review_configs must be an array";
    for (std::size_t i = 0; i < configs->size(); ++i) {
      const auto& config = (*configs)[i];
      std::string where = "review_configs[" + std::to_string(i) + "]";
      if (!config.is_object() || !config.contains("action_name") || !config["action_name"].is_string())
        return where + " must be an object with a string action_name";
      auto allowed = config.find("allowed_decisions");
      if (allowed == config.end() || !allowed->is_array())
        return where + ".allowed_decisions must be an array";
      for (const auto& type : *allowed)
        if (!type.is_string() || !is_decision_type(type.get<std::string>()))
          return where + ".allowed_decisions may hold only approve, edit, reject";
    }
  }
  auto timeout = event.find("timeout");
  if (timeout != event.end() && !timeout->is_null()) {
    if (!timeout->is_number() || !std::isfinite(timeout->get<double>()) || timeout->get<double>() < 0)
      return "timeout must be a number of seconds >= 0";
  }
  auto reply_to = event.find("reply_to");
  if (reply_to != event.end() && !reply_to->is_null() && !reply_to->is_string())
    return "reply_to must be a string";
  auto thread = event.find("thread_id");
  if (thread != event.end() && !thread->is_null() && !thread->is_string())
    return "thread_id must be a string";
  return {};
}

// The timed-out resolution of an interrupt.
json timeout_decision(const json& interrupt) {
  json decision = {{"type", "decision"}, {"interrupt_id", interrupt["interrupt_id"]}};
  if (interrupt.contains("thread_id") && !interrupt["thread_id"].is_null())
    decision["thread_id"] = interrupt["thread_id"];
  json entries = json::array();
  for (std::size_t i = 0; i < interrupt["action_requests"].size(); ++i)
    entries.push_back({{"type", "reject"}, {"message", "timed out"}});
  decision["decisions"] = std::move(entries);
  decision["timed_out"] = true;
  return decision;
}

std::string reply_to_of(const json& interrupt) {
  auto it = interrupt.find("reply_to");
  return it != interrupt.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

HitlTable::HitlTable(HitlOptions options) : options_(options) {}

HitlInterruptResult HitlTable::on_interrupt(json event, double now) {
  HitlInterruptResult result = prepare_interrupt(std::move(event));
  if (!result.ok) return result;
  std::string id = result.event["interrupt_id"].get<std::string>();
  double deadline = now + result.event["timeout"].get<double>();
  pending_[id] = Pending{result.event, deadline, arrivals_++};
  return result;
}

HitlInterruptResult HitlTable::prepare_interrupt(json event) {
  HitlInterruptResult result;
  if (!event.is_object()) {
    result.error = "an interrupt must be a JSON object";
    return result;
  }
  std::string id;
  auto id_field = event.find("interrupt_id");
  if (id_field != event.end() && !id_field->is_null()) {
    if (!id_field->is_string() || id_field->get_ref<const std::string&>().empty()) {
      result.error = "interrupt_id must be a non-empty string";
      return result;
    }
    id = id_field->get<std::string>();
    if (pending_.count(id)) {
      result.error = "interrupt_id \"" + id + "\" is already pending";
      return result;
    }
  }
  if (std::string problem = check_interrupt(event); !problem.empty()) {
    result.error = problem;
    return result;
  }
  if (pending_.size() >= options_.max_pending) {
    result.error = "too many pending interrupts (" + std::to_string(options_.max_pending) + ")";
    return result;
  }
  if (id.empty()) {
    // Skip ids a client chose itself that happen to look like ours.
    do {
      id = "i-" + std::to_string(next_id_++);
    } while (pending_.count(id) || resolved_reason_.count(id));
    event["interrupt_id"] = id;
  }
  if (!event.contains("timeout") || event["timeout"].is_null()) event["timeout"] = options_.default_timeout;
  result.ok = true;
  result.event = std::move(event);
  return result;
}

HitlDecisionResult HitlTable::on_decision(const json& decision, const std::string& client, double now,
                                          bool resolve) {
  HitlDecisionResult result;
  if (!decision.is_object()) {
    result.error = error_reply("a decision must be a JSON object");
    return result;
  }
  auto id_field = decision.find("interrupt_id");
  if (id_field == decision.end() || !id_field->is_string()) {
    result.error = error_reply("a decision needs a string interrupt_id");
    return result;
  }
  const std::string& id = id_field->get_ref<const std::string&>();
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    auto why = resolved_reason_.find(id);
    result.error = error_reply("not pending", id,
                               why != resolved_reason_.end() ? why->second : "unknown interrupt_id");
    return result;
  }
  const Pending& pending = it->second;
  // At the instant of the deadline the timeout wins; expire() resolves it.
  if (now >= pending.deadline) {
    result.error = error_reply("not pending", id, "timed out");
    return result;
  }
  // An earlier decision is being recorded (--audit): it wins unless its
  // record fails, and then the interrupt is pending again.
  if (pending.flight != Flight::kNone) {
    result.error = error_reply("not pending", id, "being recorded");
    return result;
  }
  const json& interrupt = pending.event;
  auto thread = decision.find("thread_id");
  if (thread != decision.end() && !thread->is_null()) {
    json expected = interrupt.contains("thread_id") ? interrupt["thread_id"] : json();
    if (*thread != expected) {
      result.error = error_reply("thread_id does not match the interrupt's", id);
      return result;
    }
  }
  auto entries = decision.find("decisions");
  if (entries == decision.end() || !entries->is_array()) {
    result.error = error_reply("decisions must be an array, one entry per action request", id);
    return result;
  }
  const json& requests = interrupt["action_requests"];
  if (entries->size() != requests.size()) {
    result.error = error_reply("expected " + std::to_string(requests.size()) +
                                   " decision(s), one per action request, got " +
                                   std::to_string(entries->size()),
                               id);
    return result;
  }
  for (std::size_t i = 0; i < entries->size(); ++i) {
    const json& entry = (*entries)[i];
    std::string where = "decisions[" + std::to_string(i) + "]";
    if (!entry.is_object()) {
      result.error = error_reply(where + " must be an object", id);
      return result;
    }
    auto type_field = entry.find("type");
    if (type_field == entry.end() || !type_field->is_string() ||
        !is_decision_type(type_field->get<std::string>())) {
      result.error = error_reply(where + ".type must be approve, edit or reject", id);
      return result;
    }
    std::string type = type_field->get<std::string>();
    std::string action = requests[i]["name"].get<std::string>();
    auto allowed = allowed_for(interrupt, action);
    if (std::find(allowed.begin(), allowed.end(), type) == allowed.end()) {
      result.error = error_reply(where + ": \"" + type + "\" is not allowed for action \"" + action +
                                     "\" (allowed: " + join(allowed) + ")",
                                 id);
      return result;
    }
    if (type == "edit") {
      auto edited = entry.find("edited_action");
      std::string problem = edited == entry.end() ? std::string("missing") : check_edited_action(*edited);
      if (!problem.empty()) {
        result.error = error_reply(where + ".edited_action: " + problem, id);
        return result;
      }
    }
    if (type == "reject" && entry.contains("message") && !entry["message"].is_string()) {
      result.error = error_reply(where + ".message must be a string", id);
      return result;
    }
  }

  json accepted = decision;
  accepted["type"] = "decision";
  if (interrupt.contains("thread_id") && !interrupt["thread_id"].is_null())
    accepted["thread_id"] = interrupt["thread_id"];
  accepted["client"] = client;
  // A client must not be able to claim a timeout on the relay's behalf.
  accepted.erase("timed_out");
  result.resolved = HitlResolution{std::move(accepted), reply_to_of(interrupt)};
  if (!resolve) return result;
  pending_.erase(it);
  remember_resolved(id, "already decided");
  return result;
}

HitlDecisionResult HitlTable::begin_decision(const json& decision, const std::string& client,
                                             double now) {
  HitlDecisionResult result = on_decision(decision, client, now, /*resolve=*/false);
  if (result.accepted())
    pending_[result.resolved->decision["interrupt_id"].get<std::string>()].flight = Flight::kDecision;
  return result;
}

std::vector<HitlResolution> HitlTable::begin_expire(double now) {
  return take_due(now, /*resolve=*/false);
}

bool HitlTable::commit(const std::string& interrupt_id) {
  auto it = pending_.find(interrupt_id);
  if (it == pending_.end() || it->second.flight == Flight::kNone) return false;
  const char* reason = it->second.flight == Flight::kTimeout ? "timed out" : "already decided";
  pending_.erase(it);
  remember_resolved(interrupt_id, reason);
  return true;
}

bool HitlTable::abort(const std::string& interrupt_id) {
  auto it = pending_.find(interrupt_id);
  if (it == pending_.end() || it->second.flight == Flight::kNone) return false;
  it->second.flight = Flight::kNone;
  return true;
}

bool HitlTable::in_flight(const std::string& interrupt_id) const {
  auto it = pending_.find(interrupt_id);
  return it != pending_.end() && it->second.flight != Flight::kNone;
}

bool HitlTable::resolve_elsewhere(const std::string& interrupt_id, bool timed_out) {
  auto it = pending_.find(interrupt_id);
  if (it == pending_.end()) return false;
  pending_.erase(it);
  remember_resolved(interrupt_id, timed_out ? "timed out" : "already decided");
  return true;
}

std::vector<HitlResolution> HitlTable::expire(double now) { return take_due(now, /*resolve=*/true); }

std::vector<HitlResolution> HitlTable::take_due(double now, bool resolve) {
  std::vector<std::pair<std::pair<double, unsigned long long>, std::string>> due;
  for (const auto& [id, pending] : pending_)
    if (pending.flight == Flight::kNone && pending.deadline <= now)
      due.push_back({{pending.deadline, pending.arrival}, id});
  std::sort(due.begin(), due.end());
  std::vector<HitlResolution> out;
  out.reserve(due.size());
  for (const auto& [key, id] : due) {
    auto it = pending_.find(id);
    out.push_back({timeout_decision(it->second.event), reply_to_of(it->second.event)});
    if (!resolve) {
      it->second.flight = Flight::kTimeout;
      continue;
    }
    pending_.erase(it);
    remember_resolved(id, "timed out");
  }
  return out;
}

std::optional<double> HitlTable::next_deadline() const {
  // An interrupt in flight has no timer: its record decides what happens.
  std::optional<double> earliest;
  for (const auto& [id, pending] : pending_)
    if (pending.flight == Flight::kNone && (!earliest || pending.deadline < *earliest))
      earliest = pending.deadline;
  return earliest;
}

json HitlTable::pending_json(double now) const {
  std::vector<const Pending*> ordered;
  ordered.reserve(pending_.size());
  for (const auto& [id, pending] : pending_) ordered.push_back(&pending);
  std::sort(ordered.begin(), ordered.end(),
            [](const Pending* a, const Pending* b) { return a->arrival < b->arrival; });
  json out = json::array();
  for (const Pending* pending : ordered) {
    json event = pending->event;
    // reply_to names a socket on the relay's host: for the relay only
    // (SPEC "Replies bound to their request"), never shown to clients.
    event.erase("reply_to");
    // Milliseconds are plenty for a countdown shown to a human.
    event["expires_in"] = std::round(std::max(0.0, pending->deadline - now) * 1000.0) / 1000.0;
    out.push_back(std::move(event));
  }
  return out;
}

const json* HitlTable::pending_event(const std::string& interrupt_id) const {
  auto it = pending_.find(interrupt_id);
  return it == pending_.end() ? nullptr : &it->second.event;
}

bool HitlTable::is_pending(const std::string& interrupt_id) const {
  return pending_.count(interrupt_id) != 0;
}

void HitlTable::remember_resolved(const std::string& id, const char* reason) {
  if (resolved_reason_.emplace(id, reason).second) resolved_order_.push_back(id);
  else resolved_reason_[id] = reason;
  while (resolved_order_.size() > kHitlRememberResolved) {
    resolved_reason_.erase(resolved_order_.front());
    resolved_order_.pop_front();
  }
}

std::vector<std::string> allowed_decisions(const json& interrupt, const std::string& action_name) {
  if (!interrupt.is_object() || !check_interrupt(interrupt).empty())
    return {std::begin(kDecisionTypes), std::end(kDecisionTypes)};
  return allowed_for(interrupt, action_name);
}

std::string check_edited_action(const json& action) {
  if (!action.is_object()) return "must be an object with a string name and object args";
  auto name = action.find("name");
  if (name == action.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return "needs a non-empty string name";
  auto args = action.find("args");
  if (args == action.end() || !args->is_object()) return "needs an object args";
  return {};
}

std::optional<json> expand_decision(const json& interrupt, const json& short_decision,
                                    const std::string& decided_by, std::string& error) {
  if (!short_decision.is_object()) {
    error = "a decision must be a JSON object";
    return std::nullopt;
  }
  std::size_t actions = 0;
  if (interrupt.contains("action_requests") && interrupt["action_requests"].is_array())
    actions = interrupt["action_requests"].size();
  json full = short_decision;
  full["type"] = "decision";
  if (interrupt.contains("interrupt_id")) full["interrupt_id"] = interrupt["interrupt_id"];
  if (interrupt.contains("thread_id") && !interrupt["thread_id"].is_null() && !full.contains("thread_id"))
    full["thread_id"] = interrupt["thread_id"];
  if (!decided_by.empty() && !full.contains("decided_by")) full["decided_by"] = decided_by;
  if (short_decision.contains("decisions")) {
    if (!short_decision["decisions"].is_array()) {
      error = "decisions must be an array";
      return std::nullopt;
    }
    return full;
  }
  auto type_field = short_decision.find("type");
  if (type_field == short_decision.end() || !type_field->is_string() ||
      !is_decision_type(type_field->get<std::string>())) {
    error = "type must be approve, edit or reject";
    return std::nullopt;
  }
  std::string type = type_field->get<std::string>();
  json entry = {{"type", type}};
  if (type == "edit") {
    if (actions != 1) {
      error = "edit in the short form needs an interrupt with exactly one action; send \"decisions\"";
      return std::nullopt;
    }
    auto edited = short_decision.find("edited_action");
    std::string problem = edited == short_decision.end() ? "missing" : check_edited_action(*edited);
    if (!problem.empty()) {
      error = "edited_action: " + problem;
      return std::nullopt;
    }
    entry["edited_action"] = *edited;
    full.erase("edited_action");
  }
  if (type == "reject" && short_decision.contains("message")) {
    if (!short_decision["message"].is_string()) {
      error = "message must be a string";
      return std::nullopt;
    }
    entry["message"] = short_decision["message"];
    full.erase("message");
  }
  full["decisions"] = json::array();
  for (std::size_t i = 0; i < actions; ++i) full["decisions"].push_back(entry);
  return full;
}

DecisionExit decision_exit_code(const json& decision) {
  auto timed_out = decision.find("timed_out");
  if (timed_out != decision.end() && timed_out->is_boolean() && timed_out->get<bool>())
    return {kExitTempFail, "nobody answered: the request timed out at the relay"};
  auto entries = decision.find("decisions");
  if (entries == decision.end() || !entries->is_array() || entries->empty())
    return {kExitDataErr, "the reply is a decision without a \"decisions\" list"};
  std::string rejections;
  for (const auto& entry : *entries) {
    std::string type = entry.is_object() && entry.contains("type") && entry["type"].is_string()
                           ? entry["type"].get<std::string>()
                           : std::string();
    if (type == "reject") {
      if (!rejections.empty()) rejections += "; ";
      rejections += "rejected";
      if (entry.contains("message") && entry["message"].is_string())
        rejections += ": " + entry["message"].get<std::string>();
    } else if (type != "approve" && type != "edit") {
      return {kExitDataErr, "the reply holds a decision of unknown type '" + event::excerpt(type) + "'"};
    }
  }
  if (rejections.empty()) return {kExitOk, "approved"};
  return {kExitNegative, rejections};
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

bool AuditLog::open(const std::string& path, std::string& error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "audit file " + path + ": " + log::errno_text(errno);
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  return true;
}

bool AuditLog::check_path(std::string& error) {
  // The record must land in the file the operator reads at path_, not in an
  // inode that was deleted or renamed away (or on a directory that is gone).
  struct stat at_path {}, open_file {};
  bool same = ::stat(path_.c_str(), &at_path) == 0 && ::fstat(fd_, &open_file) == 0 &&
              at_path.st_dev == open_file.st_dev && at_path.st_ino == open_file.st_ino;
  if (!same) {
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      error = "audit file " + path_ + ": " + log::errno_text(errno);
      return false;
    }
    ::close(fd_);
    fd_ = fd;
  }
  // A file made read-only after the start still accepts writes through the
  // descriptor opened before; the operator's intent is that it be written no
  // more. (For root, whom modes do not stop, this check passes.)
  if (::faccessat(AT_FDCWD, path_.c_str(), W_OK, AT_EACCESS) != 0) {
    error = "audit file " + path_ + ": " + log::errno_text(errno);
    return false;
  }
  return true;
}

bool AuditLog::append(const json& record, std::string& error) {
  json line = record;
  if (line.is_object()) {
    line["logged_at"] = wall_seconds();
  }
  return append_line(line.dump(-1, ' ', false, json::error_handler_t::replace), error);
}

bool AuditLog::append_line(const std::string& line, std::string& error) {
  if (fd_ < 0) {
    error = "audit file is not open";
    return false;
  }
  if (!check_path(error)) return false;
  // One write(2) per record so that a reader (tail -f) never sees half a
  // line; O_APPEND keeps concurrent writers' lines whole too.
  std::string text = line + "\n";
  // Where the record starts: a record that fails is cut off again, so the
  // file never holds half a record or one reported as not written.
  struct stat before {};
  const bool sized = ::fstat(fd_, &before) == 0 && S_ISREG(before.st_mode);
  auto fail = [&](const std::string& why) {
    // Best effort: when even the truncation fails, the error below still
    // tells the caller the record does not count.
    if (sized && ::ftruncate(fd_, before.st_size) != 0) log::note(2, "audit file " + path_ + ": ftruncate failed");
    error = "audit file " + path_ + ": " + why;
    return false;
  };
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(log::errno_text(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  while (::fsync(fd_) != 0) {
    if (errno == EINTR) continue;
    return fail("fsync: " + log::errno_text(errno));
  }
  return true;
}

// Plain POSIX rather than UnixDatagramSocket: that class's send() waits while
// the receiver's queue is full, and the relay's loop must never wait on a
// reply socket; a full or vanished one is an error to log.
std::string send_reply_datagram(const std::string& path, const std::string& payload) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    return "reply to " + path + ": path is empty or longer than " +
           std::to_string(sizeof(address.sun_path) - 1) + " bytes";
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "reply to " + path + ": socket: " + log::errno_text(errno);
  ssize_t sent;
  do {
    sent = ::sendto(fd, payload.data(), payload.size(), MSG_DONTWAIT,
                    reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  } while (sent < 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (sent < 0) return "reply to " + path + ": " + log::errno_text(err);
  if (static_cast<std::size_t>(sent) != payload.size())
    return "reply to " + path + ": datagram truncated";
  return {};
}

}  // namespace smws
