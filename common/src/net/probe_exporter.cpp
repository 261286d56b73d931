// SPDX-License-Identifier: Apache-2.0
#include "smws/net/probe_exporter.h"

#include <poll.h>
#include <unistd.h>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/log.h"
#include "smws/net/probe_report.h"
#include "smws/shutdown.h"
#include "smws/terminal_text.h"

namespace smws::net {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The probe's close handshake wait inside a module's duration (so duration
// + connect timeout bounds the whole).
double close_wait_for(double duration_s) { return std::min(0.5, duration_s / 10); }

bool read_token(const std::string& file, std::string* token, std::string* error) {
  std::ifstream in(file);
  if (!in) {
    *error = "cannot read token_file " + file + ": " + std::strerror(errno);
    return false;
  }
  std::getline(in, *token);
  while (!token->empty() && (token->back() == '\r' || token->back() == ' ')) token->pop_back();
  if (token->empty()) {
    *error = "token_file " + file + " is empty";
    return false;
  }
  return true;
}

// {"target":…,"cause":…,…}: one incident line, ASCII only (ensure_ascii), so
// a close reason cannot drive a terminal the log is tailed on.
std::string end_line(const std::string& target, const ProbeResult& r, const std::string& cause, bool confirmed,
                     const std::string& module) {
  const ReportJson report = report_json(r, target);
  ReportJson line;
  line["time"] = wall_seconds();
  line["target"] = target;
  if (!module.empty()) line["module"] = module;
  line["cause"] = cause;
  line["confirmed"] = confirmed;
  const bool opened = r.handshake.outcome == HandshakeInfo::Outcome::kOpen;
  line["after_s"] = opened ? std::round(r.evidence.age_s() * 1000) / 1000 : 0.0;
  for (const char* key : {"close", "status", "messages", "pings_received", "intermediaries", "confirm", "verdict"}) {
    auto it = report.find(key);
    if (it != report.end()) line[key] = *it;
  }
  return line.dump(-1, ' ', true, ReportJson::error_handler_t::replace) + "\n";
}

std::string candidates_key(const std::vector<std::string>& c) {
  std::vector<std::string> sorted = c;
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (const auto& s : sorted) key += s + "|";
  return key;
}

// Sleeps up to s seconds; false when shutdown was requested.
bool rest(double s) {
  pollfd p{shutdown::fd(), POLLIN, 0};
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  while (!shutdown::requested()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return true;
    ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
  }
  return false;
}

}  // namespace

bool module_probe_config(const ProbeModule& m, const WsUrl& url, double connect_timeout_s, ProbeConfig* out,
                         std::string* error) {
  ProbeConfig c;
  c.url = url;
  c.client.headers = m.headers;
  if (!m.token_file.empty()) {
    std::string token;
    if (!read_token(m.token_file, &token, error)) return false;
    c.client.headers.emplace_back("Authorization", "Bearer " + token);
  }
  c.client.origin = m.origin;
  c.client.subprotocols = m.subprotocols;
  c.client.insecure = m.insecure;
  c.client.offer_deflate = m.deflate;
  c.client.connect_timeout_s = connect_timeout_s;
  c.close_wait_s = close_wait_for(m.duration_s);
  c.duration_s = std::max(0.05, m.duration_s - c.close_wait_s);
  c.ping_interval_s = m.ping_s;
  c.send = m.send;
  *out = std::move(c);
  return true;
}

ModuleProbe run_module_probe(const ProbeModule& m, const ProbeConfig& config) {
  ModuleProbe p;
  p.module = m.name;
  const auto start = Clock::now();
  const double budget = m.duration_s + config.client.connect_timeout_s;
  if (m.find_idle_timeout_s > 0) {
    ProbeConfig base = config;
    base.ping_interval_s = 0;
    base.send.clear();
    auto run = find_idle_timeout(base, m.find_idle_timeout_s, ProbeHooks{}, nullptr, budget);
    if (run.stopped_by) {
      p.result = std::move(*run.stopped_by);
    } else {
      p.idle = std::move(run);
    }
    p.duration_s = since(start);
    return p;
  }
  ProbeHooks hooks;
  if (m.has_expect()) {
    p.expect_used = true;
    hooks.on_message = [&p, &m](std::string_view payload) {
      if (expect_matches(m, payload)) ++p.expect_matched;
      return true;
    };
  }
  auto results = run_probe(config, 1, hooks);
  if (results.empty()) {  // interrupted before it connected
    p.result.evidence.ending = Ending::kInterrupted;
    p.result.verdict = decide(p.result.evidence);
    p.duration_s = since(start);
    return p;
  }
  p.result = std::move(results.front());
  if (auto plan = plan_confirm(p.result.evidence)) {
    // The trial must end inside the budget: its hold, a connect timeout cut
    // to what is left, and the close wait.
    const double left = budget - since(start) - plan->hold_s - config.close_wait_s;
    const bool fits = m.confirm && left >= 1.0;
    ProbeConfig trial = config;
    trial.client.connect_timeout_s = std::min(config.client.connect_timeout_s, std::max(0.5, left));
    trial.send.clear();
    confirm(trial, p.result, fits, ProbeHooks{});
    if (m.confirm && !fits)
      p.result.verdict.findings.push_back("The confirming trial was not run: the module's duration leaves no room "
                                          "for it (raise duration, or probe with the CLI).");
  }
  if (p.expect_used) {
    p.expect_ok = (!m.expect_regex || p.expect_matched > 0) && p.result.evidence.messages_in >= m.expect_min_messages;
  }
  p.duration_s = since(start);
  return p;
}

double Backoff::delay_after(double lived_s) {
  if (lived_s >= kBackoffResetAge) {
    next = std::min(kBackoffStart * 2, kBackoffMax);
    return kBackoffStart;
  }
  const double delay = next;
  next = std::min(next * 2, kBackoffMax);
  return delay;
}

// --- watches -----------------------------------------------------------------

Watch::Watch(WatchEntry entry, WsUrl url, const ProbeModule& module, double connect_timeout_s, std::mutex* stdout_mu)
    : entry_(std::move(entry)),
      url_(std::move(url)),
      module_(module),
      connect_timeout_s_(connect_timeout_s),
      shown_(redact_url_token(entry_.target)),
      stdout_mu_(stdout_mu) {
  counts_.target = shown_;
  counts_.pings = module_.ping_s > 0;
}

Watch::~Watch() { join(); }

void Watch::start() {
  thread_ = std::thread([this] { run(); });
}

void Watch::join() {
  if (thread_.joinable()) thread_.join();
}

WatchSnapshot Watch::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  WatchSnapshot s = counts_;
  s.up = up_;
  s.connected_s = up_ ? since(connected_at_) : 0;
  if (last_message_at_) s.last_message_age_s = since(*last_message_at_);
  return s;
}

void Watch::run() {
  Backoff backoff;
  while (!shutdown::requested()) {
    ProbeConfig config;
    std::string error;
    double lived = -1;
    if (!module_probe_config(module_, url_, connect_timeout_s_, &config, &error)) {
      log::error("watch " + shown_ + ": " + error);
    } else {
      config.duration_s = std::nullopt;  // held until it ends
      config.close_wait_s = 2.0;
      config.max_samples = kWatchSamples;
      config.frame_log = kWatchFrames;
      ProbeHooks hooks;
      hooks.on_open = [this](const ProbeResult& r) {
        std::lock_guard<std::mutex> lock(mu_);
        ++counts_.connects;
        up_ = r.handshake.outcome == HandshakeInfo::Outcome::kOpen;
        connected_at_ = Clock::now();
      };
      hooks.on_frame = [this](const ProbeResult& r, const FrameEvent& f) {
        if (!f.incoming) return;
        const bool data = f.opcode == ws::Opcode::kText || f.opcode == ws::Opcode::kBinary ||
                          f.opcode == ws::Opcode::kContinuation;
        const bool pong = f.opcode == ws::Opcode::kPong && f.detail.rfind("rtt", 0) == 0 && r.last_rtt_ms >= 0;
        if (!data && !pong) return;
        std::lock_guard<std::mutex> lock(mu_);
        if (data) {
          ++counts_.messages;
          last_message_at_ = Clock::now();
        } else {
          const double s = r.last_rtt_ms / 1000;
          for (size_t i = 0; i < kRttBucketCount; ++i) {
            if (s <= kRttBuckets[i]) {
              ++counts_.rtt_buckets[i];
              break;
            }
          }
          ++counts_.rtt_count;
          counts_.rtt_sum_s += s;
        }
      };
      auto results = run_probe(config, 1, hooks);
      {
        std::lock_guard<std::mutex> lock(mu_);
        up_ = false;
      }
      if (results.empty() || results.front().evidence.ending == Ending::kInterrupted) break;
      ProbeResult& r = results.front();
      if (r.handshake.outcome == HandshakeInfo::Outcome::kOpen) lived = r.evidence.age_s();
      ended(r, config);
    }
    if (!rest(backoff.delay_after(lived))) break;
  }
}

void Watch::ended(ProbeResult& r, const ProbeConfig& config) {
  std::string cause = r.verdict.cause;
  bool confirmed = false;
  if (auto plan = plan_confirm(r.evidence)) {
    const std::string key = candidates_key(plan->candidates);
    auto it = confirmed_.find(key);
    if (it != confirmed_.end() && since(it->second.first) < kConfirmEvery) {
      // Same shape as an end tried less than 10 minutes ago: its settled
      // cause, or (inconclusive then) the unconfirmed verdict, without a trial.
      if (!it->second.second.empty()) {
        cause = it->second.second;
        confirmed = true;
        r.verdict.text = "Same shape as an end that a trial connection settled as " + cause + " " +
                         duration_text(since(it->second.first)) + " ago (confirmed at most every " +
                         duration_text(kConfirmEvery) + " per target). " + r.verdict.text;
        r.verdict.cause = cause;
        r.verdict.candidates.clear();
      }
    } else if (module_.confirm) {
      ProbeConfig trial = config;
      trial.send.clear();
      confirm(trial, r, true, ProbeHooks{});
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++counts_.confirmations;
      }
      if (shutdown::requested()) return;  // the trial was cut short: no verdict to count
      cause = r.verdict.cause;
      if (r.confirm && !r.confirm->settled.empty()) {
        confirmed = true;
        confirmed_[key] = {Clock::now(), r.confirm->settled};
      } else {
        // Inconclusive: no trial for this shape again before kConfirmEvery.
        confirmed_[key] = {Clock::now(), ""};
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.disconnects[cause];
  }
  const std::string line = end_line(shown_, r, cause, confirmed, entry_.module);
  std::lock_guard<std::mutex> lock(*stdout_mu_);
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a closed stdout does not stop the watch
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

// --- the HTTP side -----------------------------------------------------------

namespace {

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(Exporter& exporter) : exporter_(exporter) {}
  void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
    Exporter::Reply reply;
    try {
      reply = exporter_.handle(request.getMethod(), request.getURI());
    } catch (const std::exception& e) {
      reply = {500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n"};
    }
    response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(reply.status));
    response.setContentType(reply.content_type);
    response.setContentLength(static_cast<std::streamsize>(reply.body.size()));
    if (reply.status == 405) response.set("Allow", "GET, HEAD");
    if (reply.status == 503) response.set("Retry-After", "1");
    auto& out = response.send();
    if (request.getMethod() != "HEAD") out.write(reply.body.data(), static_cast<std::streamsize>(reply.body.size()));
  }

 private:
  Exporter& exporter_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(Exporter& exporter) : exporter_(exporter) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new Handler(exporter_);
  }

 private:
  Exporter& exporter_;
};

constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

Exporter::Exporter(ExporterConfig config, ExporterOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  counters_.max_concurrent = options_.max_concurrent;
}

Exporter::~Exporter() { stop(); }

Status Exporter::add_watch(const WatchEntry& entry) {
  if (server_) return Status::Error(Status::kInternal, "watches are added before the exporter starts");
  std::string error;
  auto url = parse_ws_url(entry.target, &error);
  if (!url) return Status::Error(Status::kUsage, "watch: " + redact_url_token(error));
  const ProbeModule* m = config_.module(entry.module.empty() ? "default" : entry.module);
  if (!m) return Status::Error(Status::kUsage, "watch: unknown module '" + entry.module + "'");
  watches_.push_back(std::make_unique<Watch>(entry, *url, *m, options_.connect_timeout_s, &stdout_mu_));
  return Status::Ok();
}

Status Exporter::start() {
  try {
    Poco::Net::ServerSocket socket;
    socket.bind(Poco::Net::SocketAddress(options_.listen.host, options_.listen.port), true);
    socket.listen(kQueuedConnections);
    port_ = socket.address().port();
    const int threads = static_cast<int>(options_.max_concurrent) + kSpareThreads;
    pool_ = std::make_unique<Poco::ThreadPool>(2, threads, 60);
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(threads);
    params->setMaxQueued(kQueuedConnections);
    params->setKeepAlive(false);  // a held keep-alive connection would hold a pool thread
    params->setTimeout(Poco::Timespan(10, 0));
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(*this), *pool_, socket, params);
    server_->start();
  } catch (const Poco::Exception& e) {
    server_.reset();
    return Status::Error(Status::kCantCreate, "--serve " + options_.listen.host + ":" +
                                                  std::to_string(options_.listen.port) + ": " + e.displayText());
  }
  for (auto& w : watches_) w->start();
  return Status::Ok();
}

void Exporter::stop() {
  if (server_) {
    server_->stopAll(false);
    server_.reset();
  }
  for (auto& w : watches_) w->join();
  if (pool_) pool_->joinAll();
}

void Exporter::count(int status) {
  std::lock_guard<std::mutex> lock(counters_mu_);
  ++counters_.requests[std::to_string(status)];
}

Exporter::Reply Exporter::handle(const std::string& method, const std::string& uri_text) {
  Reply reply;
  if (method != "GET" && method != "HEAD") {
    reply = {405, "text/plain; charset=utf-8", "only GET and HEAD are served\n"};
    count(reply.status);
    return reply;
  }
  std::string path;
  std::map<std::string, std::string> params;
  std::string bad_query;
  try {
    Poco::URI uri(uri_text);
    path = uri.getPath();
    for (const auto& [k, v] : uri.getQueryParameters()) {
      if (params.count(k)) bad_query = "the parameter '" + k + "' is given twice";
      params[k] = v;
    }
  } catch (const Poco::Exception& e) {
    reply = {400, "text/plain; charset=utf-8", "cannot parse the request URI: " + e.displayText() + "\n"};
    count(reply.status);
    return reply;
  }
  if (path == "/probe") {
    reply = bad_query.empty() ? probe(params) : Reply{400, "text/plain; charset=utf-8", bad_query + "\n"};
  } else if (path == "/metrics") {
    reply = metrics();
  } else if (path == "/") {
    reply = {200, "text/html; charset=utf-8",
             "<!doctype html><html><head><title>ws-probe exporter</title></head><body>"
             "<h1>ws-probe exporter</h1><p><a href=\"/metrics\">/metrics</a> (the exporter and its watches)</p>"
             "<p>/probe?target=ws://HOST:PORT/PATH&amp;module=NAME (modules: " +
                 config_.module_names() + ")</p></body></html>\n"};
  } else {
    reply = {404, "text/plain; charset=utf-8", "no such path; try /probe?target=URL&module=NAME or /metrics\n"};
  }
  count(reply.status);
  return reply;
}

Exporter::Reply Exporter::probe(const std::map<std::string, std::string>& params) {
  const auto text = [](int status, std::string body) { return Reply{status, "text/plain; charset=utf-8", body + "\n"}; };
  for (const auto& [k, v] : params) {
    if (k != "target" && k != "module" && k != "debug")
      return text(400, "unknown parameter '" + terminal_safe_line(k) + "' (known: target, module, debug)");
  }
  // debug=true, as the blackbox exporter: the probe's report, then the metrics.
  bool debug = false;
  if (auto d = params.find("debug"); d != params.end()) {
    if (d->second != "true" && d->second != "false") return text(400, "debug: expected true or false");
    debug = d->second == "true";
  }
  auto t = params.find("target");
  if (t == params.end() || t->second.empty())
    return text(400, "missing the target parameter: /probe?target=ws://HOST:PORT/PATH&module=NAME");
  auto mod = params.find("module");
  const std::string module_name = mod == params.end() || mod->second.empty() ? "default" : mod->second;
  const ProbeModule* m = config_.module(module_name);
  if (!m) {
    return text(400, "unknown module '" + terminal_safe_line(module_name) + "' (known: " + config_.module_names() + ")");
  }
  std::string error;
  auto url = parse_ws_url(t->second, &error);
  if (!url) return text(400, "target: " + terminal_safe_line(redact_url_token(error)));
  if (!config_.allowed(url->tls, url->host, url->port, url->target)) {
    const std::string shown = terminal_safe_line(redact_url_token(t->second));
    log::note(1, "refused /probe of " + shown + ": not in allow_targets");
    return text(403, "target " + shown +
                         (config_.allow_targets_given ? " is not covered by the config's allow_targets"
                                                      : " is not a loopback address, and the config has no "
                                                        "allow_targets (the exporter is not an open proxy)"));
  }
  // Claim a slot; over the bound, refuse at once.
  size_t running = in_flight_.fetch_add(1);
  if (running >= options_.max_concurrent) {
    in_flight_.fetch_sub(1);
    return text(503, std::to_string(running) + " probes are running, the most --max-concurrent allows (" +
                         std::to_string(options_.max_concurrent) + "); try again");
  }
  struct Release {
    std::atomic<size_t>& n;
    ~Release() { n.fetch_sub(1); }
  } release{in_flight_};
  ProbeConfig config;
  if (!module_probe_config(*m, *url, options_.connect_timeout_s, &config, &error)) {
    log::error("module " + m->name + ": " + error);
    return text(500, "module " + m->name + ": " + error);
  }
  const ModuleProbe p = run_module_probe(*m, config);
  {
    std::lock_guard<std::mutex> lock(counters_mu_);
    ++counters_.probes[{m->name, p.success() ? "true" : "false"}];
  }
  log::note(1, "probe " + terminal_safe_line(redact_url_token(t->second)) + " (" + m->name + "): " + p.cause() +
                   " in " + duration_text(p.duration_s));
  if (debug) {
    const std::string shown = redact_url_token(t->second);
    const std::string report = p.idle ? idle_search_text(*p.idle, shown) : report_text(p.result, shown, 1);
    return Reply{200, "text/plain; charset=utf-8",
                 "Probe report (module " + m->name + "):\n" + terminal_safe(report) +
                     "\nMetrics that would have been returned:\n" + probe_metrics_text(p)};
  }
  return Reply{200, kMetricsType, probe_metrics_text(p)};
}

Exporter::Reply Exporter::metrics() {
  ExporterCounters c;
  {
    std::lock_guard<std::mutex> lock(counters_mu_);
    c = counters_;
  }
  c.in_flight = in_flight_.load();
  c.uptime_s = since(started_);
  std::vector<WatchSnapshot> watches;
  watches.reserve(watches_.size());
  for (const auto& w : watches_) watches.push_back(w->snapshot());
  return Reply{200, kMetricsType, exporter_metrics_text(c, watches)};
}

}  // namespace smws::net
