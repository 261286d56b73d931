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
//                 nor an fsync can stall the loop.
//
// Subscriptions: subs_ (the client index) and routes_ belong to the loop
// thread; a broadcast goes through fan_out(), which is a plain broadcast
// while every client takes every event, and otherwise sends to the clients
// the index selects (see subscription.h), so its cost follows the audience.
//
// Lock: mu_ guards hub_, hitl_, inbox_ and stdin_eof_. Taking the events
// out of inbox_ and taking a snapshot for a new client happen under the same
// lock hold, so a new client gets every event exactly once: either inside its
// snapshot/history or live, never both or neither.
#include "ws_relay.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/log.h"
#include "smws/ndjson.h"
#include "smws/net/dashboard.h"
#include "smws/net/ws_server.h"
#include "smws/protocol.h"
#include "smws/relay_hub.h"
#include "smws/shutdown.h"
#include "smws/subscription.h"
#include "smws/ws_frame.h"

namespace smws {
namespace {

// Longest stdin line accepted. Events are at most 64 KiB as datagrams; 1 MiB
// leaves room for events built by other producers while bounding memory.
constexpr size_t kMaxStdinLine = 1 << 20;
// Lines waiting for stdout. A reader that stops reading our stdout must not
// grow memory without bound: past either limit, lines are dropped and
// counted. The byte limit matters because one line can be --max-message
// (1 MiB by default): 100,000 lines alone would allow ~100 GB.
constexpr size_t kMaxOutputBacklog = 100000;
constexpr size_t kMaxOutputBacklogBytes = 64 << 20;

double wall_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

double mono_now() { return net::WsServer::now(); }

// Writes stdout lines and audit records on its own thread (see top).
class OutputThread {
 public:
  explicit OutputThread(AuditLog* audit) : audit_(audit), thread_([this] { run(); }) {}
  ~OutputThread() {
    if (!stop()) std::_Exit(kExitOk);  // see stop(); nothing else is left to do
  }

  // Any thread. line: one NDJSON line with its '\n'.
  void line(std::string line) { push(Item{std::move(line), {}, false}); }
  void audit(nlohmann::json record) {
    if (audit_ && audit_->is_open()) push(Item{{}, std::move(record), true});
  }

  // Writes what is queued, then ends the thread. Returns false when that
  // did not finish within `seconds` (stdout is a pipe nobody reads): the
  // thread is then left blocked in write(2) and the caller must _exit.
  bool stop(double seconds = 2.0) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!thread_.joinable()) return true;
    stopping_ = true;
    cv_.notify_one();
    bool done = cv_done_.wait_for(lock, std::chrono::duration<double>(seconds),
                                  [&] { return finished_; });
    lock.unlock();
    if (!done) return false;
    thread_.join();
    return true;
  }

 private:
  struct Item {
    std::string line;
    nlohmann::json record;
    bool is_audit = false;
  };

  void push(Item item) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!item.is_audit && (items_.size() >= kMaxOutputBacklog ||
                             queued_bytes_ + item.line.size() > kMaxOutputBacklogBytes)) {
        if (dropped_++ == 0) log::warn("stdout is not being read: dropping client messages");
        return;
      }
      queued_bytes_ += item.line.size();
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
  }

  void run() {
    ndjson::Writer out(STDOUT_FILENO);
    bool stdout_open = true;
    for (;;) {
      std::deque<Item> batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !items_.empty(); });
        if (items_.empty() && stopping_) break;
        batch.swap(items_);
        queued_bytes_ = 0;
      }
      for (Item& item : batch) {
        if (item.is_audit) {
          std::string error;
          if (!audit_->append(item.record, error)) log::error(error);
        } else if (stdout_open) {
          std::string_view text = item.line;
          if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
          if (out.write_line(text) != ndjson::Writer::Status::kOk) stdout_open = false;
        }
      }
      // A lone message reaches the pipe at once; a burst goes in large writes.
      if (stdout_open && out.flush() != ndjson::Writer::Status::kOk) {
        stdout_open = false;
        log::note(1, "stdout closed; client messages are no longer printed");
      }
    }
    if (stdout_open) out.flush();
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    cv_done_.notify_all();
  }

  AuditLog* audit_;
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the thread: items_ or stopping_
  std::condition_variable cv_done_;  // wakes stop(): finished_
  std::deque<Item> items_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  bool finished_ = false;   // guarded by mu_
  size_t queued_bytes_ = 0; // guarded by mu_: bytes of the lines in items_
  size_t dropped_ = 0;      // guarded by mu_
  std::thread thread_;
};

core::HubOptions hub_options(const RelayOptions& o) {
  core::HubOptions h;
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

class Relay : public net::WsServerHandler {
 public:
  Relay(const RelayOptions& options, AuditLog* audit)
      : options_(options),
        hub_(hub_options(options)),
        hitl_(HitlOptions{options.hitl_timeout, kHitlMaxPending}),
        output_(audit) {
    hub_.set_interceptor("interrupt", [this](std::string_view event, double) {
      return on_interrupt(event);
    });
    hub_.set_pending_provider([this](double) { return hitl_.pending_json(mono_now()).dump(); });
  }

  void attach(net::WsServer* server) { server_ = server; }
  // --route paths and their filters (validated by run_ws_relay). Before run().
  void set_routes(std::vector<core::Route> routes) {
    for (auto& r : routes) routes_[r.path] = std::move(r.filter);
  }

  // --- stdin: on the loop thread when epoll can watch fd 0 (a pipe, socket
  // or terminal: one thread hop less per event), else on the stdin thread
  // (a regular file). Exactly one of the two reads stdin_reader_.
  void read_stdin(int stop_fd);         // the stdin thread's body
  void on_readable(int fd) override;    // loop thread

  // --- main thread, after run() ---
  void finish() {
    if (!output_.stop()) {
      log::warn("stdout is not being read; exiting without writing the rest");
      std::_Exit(kExitOk);
    }
  }

  // --- loop thread (WsServerHandler) ---
  net::HttpReply on_http(const net::HttpRequest& request) override;
  void on_open(const net::ClientInfo& client) override;
  void on_message(net::ClientId id, std::string_view payload, bool binary) override;
  void on_close(net::ClientId id) override {
    peers_.erase(id);
    subs_.remove(id);
  }
  void on_wake() override;
  void on_tick(double now) override;

 private:
  core::RelayHub::Intercept on_interrupt(std::string_view event);
  void handle_message(net::ClientId id, std::string_view payload);
  void deliver(const HitlResolution& resolution);  // loop thread, mu_ held
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
  net::WsServer* server_ = nullptr;
  const double started_ = mono_now();

  std::mutex mu_;
  core::RelayHub hub_;                 // guarded by mu_
  HitlTable hitl_;                     // guarded by mu_
  std::vector<Outgoing> inbox_;        // guarded by mu_: broadcasts for the loop
  bool stdin_eof_ = false;             // guarded by mu_
  // Owned by whichever thread reads stdin (see read_stdin/on_readable).
  ndjson::LineReader stdin_reader_{STDIN_FILENO, kMaxStdinLine};
  bool eof_handled_ = false;           // loop thread
  std::unordered_map<net::ClientId, std::string> peers_;  // loop thread: id → address
  core::SubscriptionIndex subs_;                          // loop thread: open clients' filters
  std::unordered_map<std::string, core::Filter> routes_;  // --route: path → filter (read-only)
  std::vector<core::SubscriberId> recipients_;            // loop thread: fan_out's scratch
  uint64_t filtered_out_ = 0;  // loop thread: deliveries a filter spared (/metrics)
  OutputThread output_;
};

// ------------------------------------------------------------ stdin thread

bool Relay::ingest_buffered_locked(std::vector<Outgoing>* out) {
  ndjson::LineReader::Line line;
  for (;;) {
    auto st = stdin_reader_.next(&line);
    if (st == ndjson::LineReader::Status::kLine) {
      core::IngestResult r = hub_.ingest(line.text, wall_now(), line.number);
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
    bool eof, posted;
    {
      // Held across the lines of one read(2) (next() never blocks).
      std::lock_guard<std::mutex> lock(mu_);
      size_t before = inbox_.size();
      eof = ingest_buffered_locked(&inbox_);
      posted = inbox_.size() > before;
      if (eof) stdin_eof_ = true;
    }
    // One wake-up per read(2), so a burst costs one, not one per line.
    if (posted || eof) server_->wake();
    if (eof) return;
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

void Relay::on_readable(int fd) {
  // Level-triggered and readable: this read(2) does not block.
  bool failed = stdin_reader_.fill() == ndjson::LineReader::Fill::kError;
  if (failed) log::error("reading stdin: " + log::errno_text(stdin_reader_.error()));
  std::vector<Outgoing> frames;
  bool eof;
  {
    std::lock_guard<std::mutex> lock(mu_);
    eof = ingest_buffered_locked(&frames) || failed;
    if (eof) stdin_eof_ = true;
  }
  for (const Outgoing& f : frames) fan_out(f);
  if (eof) {
    server_->unwatch(fd);
    on_stdin_eof();
  }
}

core::RelayHub::Intercept Relay::on_interrupt(std::string_view event) {
  // Called by hub_.ingest on the stdin thread, mu_ held.
  core::RelayHub::Intercept out;
  nlohmann::json parsed = nlohmann::json::parse(event, nullptr, false);
  HitlInterruptResult r = hitl_.on_interrupt(std::move(parsed), mono_now());
  if (!r.ok) {
    out.ok = false;
    out.error = "interrupt: " + r.error;
    return out;
  }
  output_.audit(r.event);
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
  for (core::SubscriberId id : recipients_) server_->send(id, out.frame);
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
  if (eof) on_stdin_eof();
}

void Relay::on_stdin_eof() {
  if (!eof_handled_) {
    eof_handled_ = true;
    if (options_.exit_on_eof) {
      log::note(1, "stdin ended: draining clients (up to " +
                       std::to_string(options_.drain_timeout) + " s), then exiting");
      server_->begin_shutdown(options_.drain_timeout);
    } else {
      log::note(1, "stdin ended: still serving the last state (--exit-on-eof to exit)");
    }
  }
}

void Relay::on_open(const net::ClientInfo& client) {
  peers_[client.id] = client.peer;
  std::optional<uint64_t> since;
  if (const std::string* s = client.request.query_param("since"); s && options_.seq) {
    try {
      size_t used = 0;
      unsigned long long n = std::stoull(*s, &used);
      if (used == s->size()) since = n;
    } catch (const std::exception&) {
    }
    if (!since) log::note(1, "client " + client.peer + ": ignoring since=" + *s);
  }
  // Its filter: the route's (or none), with the query's keys replacing the
  // route's. A bad query filter is answered with an error and the client
  // keeps the default view: nothing else changes.
  core::Filter base;
  if (auto route = routes_.find(client.request.path); route != routes_.end()) {
    base = route->second;
  }
  core::Filter filter;
  Status bad = core::filter_from_query(client.request.query, base, &filter);
  std::vector<Outgoing> earlier;
  std::vector<core::Payload> first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_inbox_locked(&earlier);
    first = hub_.on_connect(since, wall_now(), filter == core::Filter{} ? nullptr : &filter);
  }
  // Events older than the snapshot go to the clients already there; the
  // new client joins the broadcast list (and the index) after them.
  for (const Outgoing& f : earlier) fan_out(f);
  subs_.set(client.id, filter);
  if (!bad.ok()) {
    log::note(1, "client " + client.peer + ": " + bad.message);
    server_->send(client.id, net::make_text_frame(core::filter_error_message(bad)), true);
  }
  for (const core::Payload& p : first) server_->send(client.id, net::make_text_frame(*p), true);
}

void Relay::on_message(net::ClientId id, std::string_view payload, bool binary) {
  // The protocol is JSON text; a binary message (whose bytes need not even
  // be UTF-8) gets an error reply like any other message that is not JSON.
  if (binary) {
    server_->send_text(id, nlohmann::json{{"type", "error"},
                                          {"error", "binary messages are not supported: send JSON as text"}}
                               .dump());
    return;
  }
  // One client's message must never take the relay down: a surprise from
  // the JSON or HITL code is reported to that client and on stderr.
  try {
    handle_message(id, payload);
  } catch (const std::exception& e) {
    log::error("message from client " + std::to_string(id) + ": " + e.what());
    server_->send_text(id, nlohmann::json{{"type", "error"}, {"error", "internal error"}}.dump());
  }
}

void Relay::handle_message(net::ClientId id, std::string_view payload) {
  core::ClientMessage m = core::RelayHub::classify_client_message(payload);
  switch (m.kind) {
    case core::ClientMessage::Kind::kRefresh: {
      core::Payload snap;
      const core::Filter* filter = subs_.find(id);
      {
        std::lock_guard<std::mutex> lock(mu_);
        snap = hub_.snapshot(wall_now(), filter);
      }
      // Held to --max-queue: a client asking for snapshots it never reads
      // is a slow client, not a way to grow our memory.
      server_->send(id, net::make_text_frame(*snap));
      return;
    }
    case core::ClientMessage::Kind::kPong:
      server_->note_pong(id);
      return;
    case core::ClientMessage::Kind::kSubscribe:
      subscribe(id, m.json);
      return;
    case core::ClientMessage::Kind::kForward:
      output_.line(std::move(m.line));
      return;
    case core::ClientMessage::Kind::kError:
      server_->send_text(id, m.reply);
      return;
    case core::ClientMessage::Kind::kDecision: {
      std::string peer = peers_.count(id) ? peers_[id] : std::string();
      std::lock_guard<std::mutex> lock(mu_);
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
  const core::Filter* current = subs_.find(id);
  if (!current) return;  // not open (closing)
  core::Filter filter = *current;
  Status s = core::apply_subscribe(message, &filter);
  if (!s.ok()) {
    server_->send_text(id, core::filter_error_message(s));
    return;
  }
  std::vector<Outgoing> earlier;
  std::vector<core::Payload> view;
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
  for (const core::Payload& p : view) server_->send(id, net::make_text_frame(*p));
}

void Relay::deliver(const HitlResolution& resolution) {
  std::string text = resolution.decision.dump();
  core::Payload p = hub_.publish(text, wall_now());
  fan_out(Outgoing{net::make_text_frame(*p), "decision", std::nullopt});
  output_.line(text + "\n");
  output_.audit(resolution.decision);
  if (!resolution.reply_to.empty()) {
    std::string err = send_reply_datagram(resolution.reply_to, text);
    if (!err.empty()) log::warn(err);
  }
}

void Relay::on_tick(double now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto next = hitl_.next_deadline(); next && *next <= now) {
    for (const HitlResolution& r : hitl_.expire(now)) deliver(r);
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
  return j.dump();
}

std::string Relay::metrics_text() {
  const net::ServerStats& s = server_->stats();
  uint64_t events_in, invalid, last_seq, machines, mh_evictions;
  size_t pending, mh_machines, mh_bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_in = hub_.events_in();
    invalid = hub_.invalid_lines();
    last_seq = hub_.last_seq();
    machines = hub_.machines();
    pending = hitl_.pending_count();
    mh_evictions = hub_.machine_history().evictions();
    mh_machines = hub_.machine_history().machines();
    mh_bytes = hub_.machine_history().bytes();
  }
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + buf + "\n";
  };
  metric("ws_relay_clients", "gauge", "Connected WebSocket clients.", s.clients);
  metric("ws_relay_tcp_connections", "gauge",
         "TCP connections held (handshaking, open, closing), this request's included.",
         s.tcp_connections);
  metric("ws_relay_events_in_total", "counter", "Valid events read from stdin.", events_in);
  metric("ws_relay_invalid_lines_total", "counter", "Stdin lines skipped as invalid.", invalid);
  metric("ws_relay_messages_out_total", "counter", "Messages written to clients.", s.messages_out);
  metric("ws_relay_bytes_out_total", "counter", "WebSocket bytes written to clients.", s.bytes_out);
  metric("ws_relay_messages_in_total", "counter", "Messages received from clients.", s.messages_in);
  metric("ws_relay_dropped_total", "counter", "Messages dropped for slow clients (--slow-client drop).",
         s.dropped);
  metric("ws_relay_slow_client_closes_total", "counter", "Clients closed with 1013 for a full queue.",
         s.slow_client_closes);
  metric("ws_relay_ping_timeouts_total", "counter", "Clients closed with 1008 for unanswered pings.",
         s.ping_timeouts);
  metric("ws_relay_protocol_errors_total", "counter", "Clients closed with 1002/1007/1009.",
         s.protocol_errors);
  metric("ws_relay_connections_total", "counter", "WebSocket handshakes completed.",
         s.connections_total);
  metric("ws_relay_handshakes_refused_total", "counter", "WebSocket upgrades refused (4xx/5xx).",
         s.handshakes_refused);
  metric("ws_relay_accepts_shed_total", "counter",
         "TCP connections closed at accept: too many still in their handshake.", s.accepts_shed);
  metric("ws_relay_last_seq", "gauge", "Last seq given (--seq).", last_seq);
  metric("ws_relay_machines", "gauge", "Machines in the snapshot table.", machines);
  metric("ws_relay_hitl_pending", "gauge", "Interrupts waiting for a decision.", pending);
  metric("ws_relay_subscriptions", "gauge",
         "Clients with a type or machine filter (?type=, ?machine=, --route, subscribe).",
         subs_.filtered());
  metric("ws_relay_filtered_out_total", "counter",
         "Deliveries not made because a client's filter did not match the event.", filtered_out_);
  metric("ws_relay_machine_history_machines", "gauge",
         "Machines with events held by --machine-history.", mh_machines);
  metric("ws_relay_machine_history_bytes", "gauge",
         "Bytes held by --machine-history (bounded by --machine-history-bytes).", mh_bytes);
  metric("ws_relay_machine_history_evictions_total", "counter",
         "Machines whose held history was dropped for --machine-history-bytes, least recently "
         "active first.",
         mh_evictions);
  metric("ws_relay_uptime_seconds", "gauge", "Seconds since start.", mono_now() - started_);
  return out;
}

net::HttpReply Relay::on_http(const net::HttpRequest& request) {
  if (request.method != "GET" && request.method != "HEAD") {
    net::HttpReply r = net::text_reply(405, "only GET and HEAD are served");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (request.path == "/healthz") {
    net::HttpReply r = net::text_reply(200, healthz_text());
    r.content_type = "application/json";
    return r;
  }
  if (request.path != "/" && request.path != "/metrics") {
    // The dashboard's script, stylesheet and icon hold no data: no token.
    if (auto asset = net::dashboard_asset(request)) return *asset;
    return net::text_reply(404, "not found: " + request.path);
  }
  if (!net::token_ok(request, options_.token)) {
    net::HttpReply r = net::text_reply(401, "a valid token is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (request.path == "/metrics") {
    net::HttpReply r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_text();
    return r;
  }
  return net::dashboard_page(request, options_.path);
}

// "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces).
bool parse_listen(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string h = text.substr(0, colon);
  std::string p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  unsigned long n = std::stoul(p);
  if (n > 65535) return false;
  *host = h.empty() ? "0.0.0.0" : h;
  *port = static_cast<uint16_t>(n);
  return true;
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
  add_common_flags(app, o.common);
}

int run_ws_relay(const RelayOptions& o) {
  net::ServerOptions so;
  if (!parse_listen(o.listen, &so.host, &so.port)) {
    log::error("--listen '" + o.listen + "': expected HOST:PORT, e.g. 127.0.0.1:3002");
    return kExitUsage;
  }
  if (o.path.empty() || o.path[0] != '/') {
    log::error("--path '" + o.path + "': must start with '/'");
    return kExitUsage;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    log::error("--tls-cert and --tls-key go together");
    return kExitUsage;
  }
  std::vector<core::Route> routes;
  for (const std::string& spec : o.routes) {
    core::Route r;
    Status s = core::parse_route(spec, &r);
    if (s.ok() && (r.path == o.path || r.path == "/" || r.path == "/healthz" ||
                   r.path == "/metrics")) {
      s = Status::Error(Status::kUsage,
                        "--route '" + spec + "': " + r.path + " is already served by ws-relay");
    }
    for (const core::Route& earlier : routes) {
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
  so.ping_timeout = o.ping_timeout >= 0 ? o.ping_timeout : 2 * o.ping_interval;
  so.app_ping = o.app_ping;
  so.max_message = o.max_message;
  so.max_clients = o.max_clients;
  so.allow_origins = o.allow_origin;
  so.token = o.token;
  so.tls_cert = o.tls_cert;
  so.tls_key = o.tls_key;
  so.close_timeout = protocol::kSlowClientCloseGrace;

  AuditLog audit;
  if (!o.audit.empty()) {
    std::string error;
    if (!audit.open(o.audit, error)) {
      log::error(error);
      return kExitCantCreate;
    }
  }

  Relay relay(o, &audit);
  relay.set_routes(std::move(routes));
  net::WsServer server(so, &relay);
  relay.attach(&server);
  std::string error;
  if (!server.open(&error)) {
    log::error(error);
    relay.finish();
    if (error.rfind("cannot read", 0) == 0) return kExitNoInput;
    if (error.find("TLS") != std::string::npos) return kExitDataErr;
    if (error.find("denied") != std::string::npos) return kExitNoPerm;
    return kExitCantCreate;
  }
  // Always shown (unless -q): scripts and tests read the port from it.
  log::note(0, "listening on " + server.url());

  int stop_fd = -1;
  std::thread reader;
  if (!server.watch(STDIN_FILENO)) {
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
