// SPDX-License-Identifier: Apache-2.0
// The Relay: its parts wired together, and the handler's dispatch
// (relay.h says which thread calls each method).
#include "smws/relay/relay.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "smws/auth/audit_chain.h"
#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/protocol.h"
#include "smws/protocol_messages.h"
#include "smws/relay/refusal_advice.h"
#include "smws/relay/relay_http.h"

namespace smws::relay {
namespace {

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
  // The records are a hash chain (auth/audit_chain.h: each line names the
  // hash of the one before; ws-relay --verify-audit checks it), picked up
  // from the file's last line.
  auto chain = std::make_shared<auth::AuditChain>();
  // Only a regular file has a last line to pick up (a device such as
  // /dev/full would be read for ever).
  struct stat st {};
  const bool regular = ::stat(audit->path().c_str(), &st) == 0 && S_ISREG(st.st_mode);
  if (Status s = regular ? auth::AuditChain::resume(audit->path(), chain.get()) : Status::Ok(); !s.ok()) {
    log::warn("audit file " + audit->path() + ": " + s.message +
              "; its records from here on start a new chain (--verify-audit checks them from there)");
    *chain = auth::AuditChain();
  }
  return [audit, reports, chain](const nlohmann::json& record) -> std::string {
    std::string error;
    nlohmann::json stamped = record;
    if (stamped.is_object()) stamped["logged_at"] = wall_seconds();
    std::string line = chain->line_for(stamped);
    if (audit->append_line(line, error)) {
      chain->commit(line);
      if (reports->failing) {
        log::warn("audit file " + audit->path() + ": written again; decisions are recorded and delivered");
        *reports = Reports{};
      }
      return {};
    }
    const double now = monotonic_seconds();
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

HubOptions hub_options(const RelayOptions& o, bool seq) {
  HubOptions h;
  h.history = o.history;
  h.seq = seq;
  h.machine_history = o.machine_history;
  h.machine_history_bytes = o.machine_history_bytes;
  // In a group, `?since=` may resume anywhere in the last --redis-history
  // events, so that many are held (the replay to new clients stays --history).
  if (!o.redis.empty()) h.hold = o.redis_history;
  return h;
}

}  // namespace

Relay::Relay(const RelayOptions& options, AuditLog* audit, const redis::RedisUrl* redis_url)
    : options_(options),
      seq_(options.seq || redis_url != nullptr),
      started_(monotonic_seconds()),
      state_(RelayHub(hub_options(options, seq_)), HitlOptions{options.hitl_timeout, kHitlMaxPending}),
      output_(STDOUT_FILENO, audit_sink(audit)),
      io_(&state_, &output_),
      audience_(&state_, &io_, seq_),
      decisions_(&state_, &io_, &audience_, audit->is_open()),
      stdin_(&state_, &io_, &audience_, redis_url != nullptr,
             [this] { if (group_) group_->push(); }, [this] { on_stdin_eof(); }) {
  if (redis_url) {
    group_ = std::make_unique<GroupMember>(&state_, &io_, &audience_, &decisions_, options, *redis_url,
                                           [this] { return make_hub(); }, started_);
  }
  MutexLock lock(&state_.mu);
  state_.hub = make_hub();
  identities_.authenticator = std::make_shared<auth::Authenticator>();
}

RelayHub Relay::make_hub() {
  RelayHub hub(hub_options(options_, seq_));
  // The hub calls both while its owner holds mu (every hub call is made
  // under it).
  hub.set_interceptor("interrupt", [this](std::string_view event, double) {
    if (group_) {
      group_->assert_locked();
      return group_->check_interrupt(event);
    }
    decisions_.assert_locked();
    return decisions_.on_stdin_interrupt(event, monotonic_seconds());
  });
  hub.set_pending_provider([this](double) {
    state_.mu.assert_held();
    return state_.hitl.pending_json(monotonic_seconds()).dump();
  });
  return hub;
}

void Relay::attach(net::WsServer* server) {
  server_ = server;
  io_.set_server(server);
  register_relay_routes(server, options_, [this] { return counters(); });
}

void Relay::start_group() {
  if (group_) group_->start(monotonic_seconds());
}

void Relay::finish() {
  if (!output_.stop()) {
    log::warn("stdout is not being read; exiting without writing the rest");
    log::stop_async();  // that warning too, if stderr takes it
    std::_Exit(kExitOk);
  }
}

void Relay::set_identities(Identities identities) {
  identities_ = std::move(identities);
  decisions_.set_rules(IntakeRules{&identities_.policy, options_.reply_dir});
}

auth::AuthResult Relay::authenticate(const net::HttpRequest& request) const {
  return identities_.authenticator->authenticate(auth_request(request, wall_seconds()));
}

Status Relay::reload() {
  Identities fresh;
  if (Status s = load_identities(options_, &fresh); !s.ok()) return s;
  // Each open connection keeps its identity only while the new sources
  // still give it: a person removed, or whose groups changed, is closed.
  std::vector<net::ClientId> revoked;
  if (identities_.roles()) {
    const auto& users = fresh.authenticator->config().users;
    revoked = audience_.select([&users](const Peer& p) {
      if (p.identity.via != auth::kViaUsers) return false;
      if (!users) return true;
      const auth::UserEntry* e = users->find(p.identity.name);
      return !e || e->groups != p.identity.groups;
    });
  }
  set_identities(std::move(fresh));
  for (net::ClientId id : revoked) io_.close(id, 1008, "credentials revoked");
  log::note(1, "SIGHUP: identities and policies loaded again" +
                   (revoked.empty() ? std::string() : "; closed " + std::to_string(revoked.size()) +
                                                          " connections whose credentials were revoked"));
  return Status::Ok();
}

void Relay::on_open(const net::ClientInfo& client) {
  audience_.on_open(client, wall_seconds(), monotonic_seconds(), unverified_identity(options_));
}

void Relay::on_wake() {
  std::vector<Outgoing> frames;
  bool eof;
  {
    MutexLock lock(&state_.mu);
    frames.swap(state_.inbox);
    eof = state_.stdin_eof;
  }
  audience_.fan_out(frames);
  if (group_) group_->push();
  if (decisions_.handle_outcomes(monotonic_seconds(), wall_seconds())) stdin_.resume();
  if (eof) on_stdin_eof();
}

void Relay::on_stdin_eof() {
  if (eof_handled_) return;
  eof_handled_ = true;
  if (options_.exit_on_eof && group_) {
    // The buffered events must reach the group first (GroupMember::tick).
    log::note(1, "stdin ended: appending what is buffered, then exiting");
    group_->drain_then_exit();
  } else if (options_.exit_on_eof) {
    log::note(1, "stdin ended: draining clients (up to " + duration_text(options_.drain_timeout) +
                     "), then exiting");
    io_.begin_shutdown(options_.drain_timeout);
  } else {
    log::note(1, "stdin ended: still serving the last state (--exit-on-eof to exit)");
  }
}

// Each refusal is logged by default, naming what would let the client in
// (refusal_advice.h). A client retrying in a loop gets a line per address
// per refusal_log_ interval, which counts the others.
void Relay::on_refused(const net::RefusedUpgrade& r) {
  uint64_t since = 0;
  if (!refusal_log_.should_log(net::address_of_peer(r.peer), monotonic_seconds(), &since)) return;
  log::warn(refusal_line(r, options_, since));
}

void Relay::on_message(net::ClientId id, std::string_view payload, bool binary) {
  // The protocol is JSON text; a binary message (whose bytes need not even
  // be UTF-8) gets an error reply like any other message that is not JSON.
  if (binary) {
    io_.send_text(id, protocol::error_message("binary messages are not supported: send JSON as text"));
    return;
  }
  // One client's message must never take the relay down: a surprise from
  // the JSON or HITL code is reported to that client and on stderr.
  try {
    handle_message(id, payload);
  } catch (const std::exception& e) {
    log::error("message from client " + std::to_string(id) + ": " + e.what());
    io_.send_text(id, protocol::error_message("internal error"));
  }
}

void Relay::handle_message(net::ClientId id, std::string_view payload) {
  ClientMessage m = RelayHub::classify_client_message(payload);
  switch (m.kind) {
    case ClientMessage::Kind::kRefresh:
      audience_.refresh(id, wall_seconds());
      return;
    case ClientMessage::Kind::kPong:
      server_->note_pong(id);
      return;
    case ClientMessage::Kind::kSubscribe:
      audience_.subscribe(id, m.json, wall_seconds());
      return;
    case ClientMessage::Kind::kForward:
      if (identities_.roles()) {
        // Printed with who sent it, as the relay knows them (SPEC "Records").
        if (const Peer* who = audience_.client(id)) {
          nlohmann::json j = nlohmann::json::parse(m.line, nullptr, false);
          if (j.is_object()) {
            j["from"] = who->identity.to_json();
            io_.print(j.dump() + "\n");
            return;
          }
        }
      }
      io_.print(std::move(m.line));
      return;
    case ClientMessage::Kind::kError:
      io_.send_text(id, m.reply);
      return;
    case ClientMessage::Kind::kDecision: {
      const Peer* who = audience_.client(id);
      if (!who) return;  // closing
      if (group_) {
        group_->decide(id, m.json, *who, monotonic_seconds());
      } else {
        decisions_.decide(id, m.json, *who, monotonic_seconds(), wall_seconds());
      }
      return;
    }
  }
}

void Relay::on_tick() {
  const double now = monotonic_seconds();
  // "connections": a summary may count plain HTTP on the TLS port too.
  for (const net::RefusalSummary& s : refusal_log_.take_due(now)) {
    std::string from = !s.address.empty() ? s.address
                       : std::to_string(s.addresses) + (s.addresses == 1 ? " address" : " addresses") +
                             " no longer tracked";
    log::warn("refused " + std::to_string(s.refused) + " more connections from " + from +
              " (counted in /metrics: ws_relay_handshakes_refused_total)");
  }
  // A JWT's exp reached while its connection is open (SPEC: 1008).
  for (net::ClientId id : audience_.expired(now)) io_.close(id, 1008, "token expired");
  if (group_) {
    group_->tick(now);
  } else {
    decisions_.tick(now, wall_seconds());
  }
}

RelayCounters Relay::counters() {
  RelayCounters c;
  {
    MutexLock lock(&state_.mu);
    c.events_in = state_.hub.events_in();
    c.invalid_lines = state_.hub.invalid_lines();
    c.last_seq = state_.hub.last_seq();
    c.machines = state_.hub.machines();
    c.machines_evicted = state_.hub.machines_evicted();
    c.hitl_pending = state_.hitl.pending_count();
    c.machine_history_evictions = state_.hub.machine_history().evictions();
    c.machine_history_machines = state_.hub.machine_history().machines();
    c.machine_history_bytes = state_.hub.machine_history().bytes();
  }
  c.subscribed = audience_.subscribed();
  c.filtered_out = audience_.filtered_out();
  c.stderr_dropped = log::dropped_lines();
  c.stdout_dropped = output_.dropped();
  c.uptime_s = monotonic_seconds() - started_;
  if (decisions_.audit()) c.audit = AuditCounters{decisions_.audit_error(), decisions_.audit_failures()};
  if (group_) c.group = group_->counters();
  c.decisions_not_allowed = decisions_.not_allowed() + (group_ ? group_->not_allowed() : 0);
  return c;
}

}  // namespace smws::relay
