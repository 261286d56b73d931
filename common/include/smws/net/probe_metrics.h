// SPDX-License-Identifier: Apache-2.0
// The Prometheus text ws-probe --serve answers (SPEC "ws-probe as a
// monitor"): one /probe's metrics in the blackbox exporter's shape
// (probe_success, probe_duration_seconds, probe_websocket_*), and /metrics
// with the exporter's own counters and the held-open watches
// (ws_probe_*{target}). Pure functions of what the probe and the watches
// recorded: no I/O, so the unit tests read them as the metric contract.
//
// Label values come only from fixed sets (phases, close initiators, TCP
// ends, the verdict's causes, the knowledge base's intermediary names), the
// config's module names and the operator's watch targets (shown with their
// token redacted) — never from anything a server sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "smws/net/probe.h"

namespace smws::net {

// Exposition format 0.0.4 with labels: HELP and TYPE once per family, then
// its samples. Label values are escaped (\\, \", \n).
class MetricsText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, double value) { sample(name, {}, value); }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// What one /probe found, for its metrics.
struct ModuleProbe {
  std::string module;
  ProbeResult result;                   // the connection (or the search's stopping trial)
  double duration_s = 0;                // the whole /probe, confirm trial or search included
  bool expect_used = false;
  bool expect_ok = true;
  size_t expect_matched = 0;            // messages the regex matched
  std::optional<IdleSearchRun> idle;    // a find_idle_timeout module's search (no stopped_by)
  bool success() const;
  std::string cause() const;            // the verdict's stable cause
  bool confirmed() const;               // a trial (or the search) settled it
};
std::string probe_metrics_text(const ModuleProbe& p);

// Buckets of ws_probe_ping_rtt_seconds (seconds).
inline constexpr double kRttBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
inline constexpr size_t kRttBucketCount = sizeof(kRttBuckets) / sizeof(kRttBuckets[0]);

// One watch as /metrics shows it (a copy taken under the watch's lock).
struct WatchSnapshot {
  std::string target;  // redacted
  bool up = false;
  double connected_s = 0;                  // age of the current connection
  std::optional<double> last_message_age_s;
  uint64_t messages = 0;
  uint64_t connects = 0;
  std::map<std::string, uint64_t> disconnects;  // by cause
  uint64_t confirmations = 0;
  bool pings = false;                      // the watch's module pings: its RTT histogram is exported
  uint64_t rtt_buckets[kRttBucketCount] = {};   // cumulative counts are built when printed
  uint64_t rtt_count = 0;
  double rtt_sum_s = 0;
};

struct ExporterCounters {
  std::map<std::pair<std::string, std::string>, uint64_t> probes;  // (module, "true"/"false") → count
  std::map<std::string, uint64_t> requests;                         // HTTP status → count
  size_t in_flight = 0;
  size_t max_concurrent = 0;
  double uptime_s = 0;
};
std::string exporter_metrics_text(const ExporterCounters& c, const std::vector<WatchSnapshot>& watches);

}  // namespace smws::net
