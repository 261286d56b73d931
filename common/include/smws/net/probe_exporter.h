// SPDX-License-Identifier: Apache-2.0
// ws-probe --serve: the Prometheus exporter (SPEC "ws-probe as a monitor").
// GET /probe?target=URL&module=NAME runs one probe with the same engine and
// verdict as the CLI (smws/net/probe.h) and answers its metrics
// (smws/net/probe_metrics.h); GET /metrics answers the exporter's own
// counters and the held-open watches (--watch).
//
// Why POCO's HTTPServer: the exporter speaks plain HTTP/1.1 request/answer
// to Prometheus, nothing ws-relay's epoll server (net/ws_server.cpp) is for,
// and a /probe handler blocks for the module's duration by design — which
// POCO's model (an accept thread handing each connection to a bounded thread
// pool) is built for; the relay's loop must never block. POCO also bounds
// the request head (field count and sizes) and the receive time.
//
// Threads:
//  - POCO's accept thread (TCPServer) takes connections and queues them for
//    the pool (at most kQueuedConnections waiting; beyond that POCO closes).
//  - The pool (max_concurrent + kSpareThreads threads, owned by Exporter)
//    runs handlers. A /probe handler runs its probe on its own pool thread
//    (the engine adds one short-lived opener thread per connection). The
//    in-flight count is an atomic: over max_concurrent a request gets 503 at
//    once, so the spare threads always answer /metrics and refusals.
//  - One thread per watch (Watch), which owns its connection; its live
//    figures are behind Watch::mu_, read by /metrics handlers.
//  - stdout (the watches' NDJSON lines) is written under stdout_mu_.
// Every probe is bounded (module duration + connect timeout); watches and
// probes end on SIGINT/SIGTERM (smws/shutdown.h), when stop() also stops
// the server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "smws/listen_address.h"
#include "smws/net/probe.h"
#include "smws/net/probe_metrics.h"
#include "smws/probe_modules.h"
#include "smws/status.h"

namespace Poco {
class ThreadPool;
namespace Net {
class HTTPServer;
}
}  // namespace Poco

namespace smws::net {

// Threads beyond max_concurrent for /metrics, refusals and the index.
inline constexpr int kSpareThreads = 4;
inline constexpr int kQueuedConnections = 64;
// A watch keeps this many lag samples / round trips per connection, and
// this many frames (the NDJSON line of an end does not list frames).
inline constexpr size_t kWatchSamples = 4096;
inline constexpr size_t kWatchFrames = 16;
// The watch's reconnect backoff (SPEC): from 0.5 s, doubling to 30 s while
// connections fail within 1 s, back to 0.5 s after one that lived 1 s.
inline constexpr double kBackoffStart = 0.5;
inline constexpr double kBackoffMax = 30.0;
inline constexpr double kBackoffResetAge = 1.0;
// An ambiguous end is confirmed at most once per target and pair of causes
// in this long; later ends of that shape take the confirmed cause.
inline constexpr double kConfirmEvery = 600.0;

// The engine's settings for a module: headers, the token_file's token,
// subprotocols, TLS, deflate, pings, sends. False and *error when the
// token_file cannot be read.
bool module_probe_config(const ProbeModule& m, const WsUrl& url, double connect_timeout_s, ProbeConfig* out,
                         std::string* error);

// One /probe: blocking, bounded by module duration + connect_timeout_s
// (the confirming trial runs only when it fits; the idle search stops
// before a trial that would not).
ModuleProbe run_module_probe(const ProbeModule& m, const ProbeConfig& config);

// Backoff before the next connect: `lived_s` is how long the last
// connection stayed open (< 0: it never opened). Pure, for the unit tests.
struct Backoff {
  double next = kBackoffStart;
  double delay_after(double lived_s);
};

class Watch {
 public:
  Watch(WatchEntry entry, WsUrl url, const ProbeModule& module, double connect_timeout_s, std::mutex* stdout_mu);
  ~Watch();
  void start();
  void join();
  WatchSnapshot snapshot() const;

 private:
  void run();
  void ended(ProbeResult& r, const ProbeConfig& config);

  const WatchEntry entry_;
  const WsUrl url_;
  const ProbeModule module_;
  const double connect_timeout_s_;
  const std::string shown_;  // the target with its token redacted (the label)
  std::mutex* stdout_mu_;
  std::thread thread_;

  using Clock = std::chrono::steady_clock;
  mutable std::mutex mu_;  // guards everything below; the watch thread writes, /metrics reads
  bool up_ = false;
  Clock::time_point connected_at_;
  std::optional<Clock::time_point> last_message_at_;
  WatchSnapshot counts_;  // messages, connects, disconnects, confirmations, rtt
  // Watch thread only: (candidate pair) → when it was confirmed and as what.
  std::map<std::string, std::pair<Clock::time_point, std::string>> confirmed_;
};

struct ExporterOptions {
  ListenAddress listen;
  size_t max_concurrent = 16;
  double connect_timeout_s = 10;
};

class Exporter {
 public:
  Exporter(ExporterConfig config, ExporterOptions options);
  ~Exporter();
  // Binds and starts serving; kCantCreate when the address cannot be bound.
  Status start();
  uint16_t port() const { return port_; }
  // Adds and starts a watch (before or after start()).
  Status add_watch(const WatchEntry& entry);
  // Stops the server (in-flight probes finish or end on the shutdown
  // signal) and joins the watches.
  void stop();

  // Request handling, public for the POCO handler (same thread rules).
  struct Reply {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  Reply handle(const std::string& method, const std::string& uri);

 private:
  Reply probe(const std::map<std::string, std::string>& params);
  Reply metrics();
  void count(int status);

  const ExporterConfig config_;
  const ExporterOptions options_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  uint16_t port_ = 0;
  std::atomic<size_t> in_flight_{0};
  std::mutex counters_mu_;  // guards counters_ (any pool thread)
  ExporterCounters counters_;
  std::mutex stdout_mu_;    // one NDJSON line at a time from the watch threads
  std::vector<std::unique_ptr<Watch>> watches_;  // set up on the main thread before serving
};

}  // namespace smws::net
