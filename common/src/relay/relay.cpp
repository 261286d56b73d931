// SPDX-License-Identifier: Apache-2.0
// The Relay's methods: which thread calls each is said in relay.h.
#include "smws/relay/relay.h"

#include "smws/relay/refusal_advice.h"
#include "smws/relay/relay_metrics.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>

#include <nlohmann/json.hpp>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/net/dashboard.h"
#include "smws/prometheus.h"
#include "smws/protocol.h"
#include "smws/protocol_messages.h"
#include "smws/web_assets.h"
#include "smws/ws_frame.h"

namespace smws::relay {
namespace {


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

}  // namespace

Relay::Relay(const RelayOptions& options, AuditLog* audit, const redis::RedisUrl* redis_url)
    : options_(options),
      seq_(options.seq || redis_url != nullptr),
      started_(mono_now()),
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

void Relay::start_group() {
  if (!group_) return;
  if (!server_->watch(group_->fd(), [this] { group_->on_readable(); })) {
    log::error("redis: cannot watch the connection set");
  }
  group_->start(mono_now());
}

void Relay::finish() {
  if (!output_.stop()) {
    log::warn("stdout is not being read; exiting without writing the rest");
    log::stop_async();  // that warning too, if stderr takes it
    std::_Exit(kExitOk);
  }
}

RelayHub Relay::make_hub() {
  // In a group, `?since=` may resume anywhere in the last --redis-history
  // events, so that many are held (the replay to new clients stays
  // --history).
  HubOptions h = hub_options(options_);
  h.seq = seq_;
  if (group_enabled()) h.hold = options_.redis_history;
  RelayHub hub(h);
  // The hub calls both while its owner holds mu_ (every hub_ call is made
  // under it).
  hub.set_interceptor("interrupt", [this](std::string_view event, double) {
    mu_.assert_held();
    return group_enabled() ? on_group_interrupt(event) : on_interrupt(event);
  });
  hub.set_pending_provider([this](double) {
    mu_.assert_held();
    return hitl_.pending_json(mono_now()).dump();
  });
  return hub;
}


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
      MutexLock lock(&mu_);
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
      MutexLock lock(&mu_);
      stdin_eof_ = true;
      server_->wake();
      return;
    }
  }
}

bool Relay::wait_while_held(int stop_fd) {
  MutexLock lock(&mu_);
  while (held_interrupt_) {
    // Bounded, so that a stop request is seen while the record is written.
    lock.wait_for(stdin_resume_, std::chrono::milliseconds(200));
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
    MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
    events.swap(group_inbox_);
  }
  if (events.empty()) return;
  for (redis::Outgoing& o : events) group_->append(std::move(o));
  // One script call for what one read(2) brought (or more, while a batch
  // is in flight).
  group_->flush();
}

RelayHub::Intercept Relay::on_interrupt(std::string_view event) {
  // Called by hub_.ingest on whichever thread reads stdin (the loop, or
  // the stdin thread for a regular file).
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
    MutexLock lock(&mu_);
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
      MutexLock lock(&mu_);
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
  MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
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

// Each refusal is logged by default, naming what would let the client in
// (refusal_advice.h). A client retrying in a loop gets a line per address
// per refusal_log_ interval, which counts the others.
void Relay::on_refused(const net::RefusedUpgrade& r) {
  uint64_t since = 0;
  if (!refusal_log_.should_log(net::address_of_peer(r.peer), mono_now(), &since)) return;
  log::warn(refusal_line(r, options_, since));
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
        MutexLock lock(&mu_);
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
          MutexLock lock(&mu_);
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
                             MutexLock lock(&mu_);
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
      MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
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
      MutexLock lock(&mu_);
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
      log::note(1, "stdin ended: draining clients (up to " + duration_text(options_.drain_timeout) +
                       "), then exiting");
      server_->begin_shutdown(options_.drain_timeout);
    }
    return;
  }
  MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
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
      MutexLock lock(&mu_);
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
  MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
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

RelayCounters Relay::counters() {
  RelayCounters c;
  {
    MutexLock lock(&mu_);
    c.events_in = hub_.events_in();
    c.invalid_lines = hub_.invalid_lines();
    c.last_seq = hub_.last_seq();
    c.machines = hub_.machines();
    c.machines_evicted = hub_.machines_evicted();
    c.hitl_pending = hitl_.pending_count();
    c.machine_history_evictions = hub_.machine_history().evictions();
    c.machine_history_machines = hub_.machine_history().machines();
    c.machine_history_bytes = hub_.machine_history().bytes();
  }
  c.subscribed = subs_.filtered();
  c.filtered_out = filtered_out_;
  c.stderr_dropped = log::dropped_lines();
  c.stdout_dropped = output_.dropped();
  c.uptime_s = mono_now() - started_;
  if (audit_) c.audit = AuditCounters{audit_error_, audit_failures_};
  if (group_) {
    c.group = GroupCounters{relay_id_, group_->up(), group_->up() ? std::string() : group_->down_reason(),
                            group_->stats(), decisions_unavailable_, decisions_lost_};
  }
  return c;
}

void Relay::attach(net::WsServer* server) {
  server_ = server;
  server->route("/healthz", [this](const net::HttpRequest&) {
    // 503 while Redis is away, so a load balancer sends new clients to a
    // relay of the group that has it.
    const RelayCounters c = counters();
    net::HttpReply r = net::text_reply(healthz_status(c), healthz_text(server_->stats(), c));
    r.content_type = "application/json";
    return r;
  });
  server->route(
      "/metrics",
      [this](const net::HttpRequest&) {
        net::HttpReply r;
        r.content_type = PrometheusText::kContentType;
        r.body = metrics_text(server_->stats(), counters());
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

}  // namespace smws::relay
