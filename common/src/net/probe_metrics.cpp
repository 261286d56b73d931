// SPDX-License-Identifier: Apache-2.0
#include "smws/net/probe_metrics.h"

#include <cmath>
#include <cstdio>

#include "smws/net/probe_report.h"

namespace smws::net {
namespace {

std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

void escape_into(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

std::string bucket_text(double le) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", le);
  return buf;
}

bool opened(const ProbeResult& r) { return r.handshake.outcome == HandshakeInfo::Outcome::kOpen; }

}  // namespace

void MetricsText::family(std::string_view name, std::string_view type, std::string_view help) {
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void MetricsText::sample(std::string_view name, const Labels& labels, double value) {
  out_.append(name);
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) out_ += ',';
      out_.append(labels[i].first).append("=\"");
      escape_into(out_, labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  out_.append(" ").append(number(value)).append("\n");
}

bool ModuleProbe::success() const {
  if (idle) return idle_search_verdict(*idle).cause == "healthy";
  return result.verdict.cause == "healthy" && (!expect_used || expect_ok);
}

std::string ModuleProbe::cause() const { return idle ? idle_search_verdict(*idle).cause : result.verdict.cause; }

bool ModuleProbe::confirmed() const {
  if (idle) return idle->search.upper_s().has_value();
  return result.confirm && !result.confirm->settled.empty();
}

std::string probe_metrics_text(const ModuleProbe& p) {
  MetricsText m;
  const ProbeResult& r = p.result;
  const HandshakeInfo& h = r.handshake;
  const ProbeEvidence& e = r.evidence;

  m.family("probe_success", "gauge", "1 when the verdict is healthy (and the module's expect held).");
  m.sample("probe_success", p.success() ? 1 : 0);
  m.family("probe_duration_seconds", "gauge", "How long the whole probe took, confirming trial included.");
  m.sample("probe_duration_seconds", p.duration_s);

  m.family("probe_websocket_duration_seconds", "gauge", "Duration of each phase of the connection.");
  const double resolve = p.idle ? -1 : h.resolve_ms;
  const double connect = p.idle ? p.idle->connect_ms : h.connect_ms;
  const double handshake = p.idle ? p.idle->handshake_ms : h.handshake_ms;
  const double tls = p.idle ? -1 : h.tls_ms;
  if (resolve >= 0) m.sample("probe_websocket_duration_seconds", {{"phase", "resolve"}}, resolve / 1000);
  if (connect >= 0) m.sample("probe_websocket_duration_seconds", {{"phase", "connect"}}, connect / 1000);
  if (tls >= 0) m.sample("probe_websocket_duration_seconds", {{"phase", "tls"}}, tls / 1000);
  if (handshake >= 0)
    m.sample("probe_websocket_duration_seconds", {{"phase", "upgrade"}}, (handshake - std::max(0.0, tls)) / 1000);
  if (!p.idle && e.first_message_s)
    m.sample("probe_websocket_duration_seconds", {{"phase", "first_message"}},
             std::max(0.0, *e.first_message_s - e.handshake_done_s));

  m.family("probe_websocket_status_code", "gauge", "HTTP status of the upgrade response (0 when none).");
  m.sample("probe_websocket_status_code", p.idle ? p.idle->status : h.status);

  if (!p.idle) {
    const bool closed_frame = e.ending == Ending::kServerClose || e.ending == Ending::kStillOpen ||
                              e.ending == Ending::kInputEnded || e.ending == Ending::kInterrupted ||
                              e.ending == Ending::kProtocolError;
    m.family("probe_websocket_close_code", "gauge", "Close code of the connection's end (1006 when no close frame).");
    m.sample("probe_websocket_close_code", opened(r) && closed_frame && e.close_code != 0 ? e.close_code : 1006);
    m.family("probe_websocket_close_initiator", "gauge", "Which side ended the connection first (1 for that side).");
    for (CloseBy by : {CloseBy::kServer, CloseBy::kClient, CloseBy::kNone})
      m.sample("probe_websocket_close_initiator", {{"by", close_by_name(by)}}, e.close_by == by ? 1 : 0);
    m.family("probe_websocket_tcp_end", "gauge", "How the TCP stream ended without a close frame (1 for fin, rst or none).");
    for (TcpEnd how : {TcpEnd::kFin, TcpEnd::kRst, TcpEnd::kNone})
      m.sample("probe_websocket_tcp_end", {{"how", how == TcpEnd::kNone ? "none" : tcp_end_name(how)}},
               e.tcp_end == how ? 1 : 0);
    if (!r.rtt_ms.empty()) {
      double sum = 0;
      for (double v : r.rtt_ms) sum += v;
      m.family("probe_websocket_ping_rtt_seconds", "gauge", "Mean round trip of the probe's pings (module ping).");
      m.sample("probe_websocket_ping_rtt_seconds", sum / static_cast<double>(r.rtt_ms.size()) / 1000);
    }
    m.family("probe_websocket_messages_received", "gauge", "Data messages received during the probe.");
    m.sample("probe_websocket_messages_received", static_cast<double>(e.messages_in));
    if (p.expect_used) {
      m.family("probe_websocket_expect_ok", "gauge", "1 when the module's expect (regex, min_messages) held.");
      m.sample("probe_websocket_expect_ok", p.expect_ok ? 1 : 0);
      m.family("probe_websocket_expect_matched_messages", "gauge", "Messages the module's expect regex matched.");
      m.sample("probe_websocket_expect_matched_messages", static_cast<double>(p.expect_matched));
    }
  }

  m.family("probe_websocket_cause_info", "gauge",
           "The verdict's stable cause (1); confirmed=\"true\" when a trial connection settled it.");
  m.sample("probe_websocket_cause_info", {{"cause", p.cause()}, {"confirmed", p.confirmed() ? "true" : "false"}}, 1);

  const auto& intermediaries = p.idle ? p.idle->intermediaries : r.intermediaries;
  bool any = false;
  for (const auto& i : intermediaries) {
    if (!is_in_between(i)) continue;  // "origin server …" carries the server's own header text
    if (!any) m.family("probe_websocket_intermediary_info", "gauge", "A proxy, CDN or platform named by the response headers.");
    any = true;
    m.sample("probe_websocket_intermediary_info", {{"name", i.name}}, 1);
  }
  if (!p.idle && h.cert_expiry_unix > 0) {
    m.family("probe_ssl_earliest_cert_expiry", "gauge", "wss: the server certificate's notAfter, Unix seconds.");
    m.sample("probe_ssl_earliest_cert_expiry", h.cert_expiry_unix);
  }
  if (p.idle) {
    if (auto upper = p.idle->search.upper_s()) {
      m.family("probe_websocket_idle_timeout_seconds", "gauge",
               "The path's idle timeout measured by the module's find_idle_timeout (upper bound of the bracket).");
      m.sample("probe_websocket_idle_timeout_seconds", *upper);
    }
    m.family("probe_websocket_idle_search_trials", "gauge", "Silent trial connections the idle-timeout search held.");
    m.sample("probe_websocket_idle_search_trials", p.idle->search.trials());
  }
  return m.text();
}

std::string exporter_metrics_text(const ExporterCounters& c, const std::vector<WatchSnapshot>& watches) {
  MetricsText m;
  m.family("ws_probe_exporter_probes_total", "counter", "/probe requests that ran a probe, by module and success.");
  for (const auto& [key, n] : c.probes)
    m.sample("ws_probe_exporter_probes_total", {{"module", key.first}, {"success", key.second}}, static_cast<double>(n));
  m.family("ws_probe_exporter_requests_total", "counter", "HTTP requests answered, by status code.");
  for (const auto& [code, n] : c.requests)
    m.sample("ws_probe_exporter_requests_total", {{"code", code}}, static_cast<double>(n));
  m.family("ws_probe_exporter_probes_in_flight", "gauge", "Probes running now.");
  m.sample("ws_probe_exporter_probes_in_flight", static_cast<double>(c.in_flight));
  m.family("ws_probe_exporter_max_concurrent", "gauge", "--max-concurrent: probes allowed at once (more get 503).");
  m.sample("ws_probe_exporter_max_concurrent", static_cast<double>(c.max_concurrent));
  m.family("ws_probe_exporter_uptime_seconds", "gauge", "Seconds since the exporter started.");
  m.sample("ws_probe_exporter_uptime_seconds", c.uptime_s);
  if (watches.empty()) return m.text();

  m.family("ws_probe_up", "gauge", "1 while the watch's connection is open.");
  for (const auto& w : watches) m.sample("ws_probe_up", {{"target", w.target}}, w.up ? 1 : 0);
  m.family("ws_probe_connected_seconds", "gauge", "Age of the watch's current connection (0 when down).");
  for (const auto& w : watches) m.sample("ws_probe_connected_seconds", {{"target", w.target}}, w.up ? w.connected_s : 0);
  m.family("ws_probe_connects_total", "counter", "Connection attempts by the watch.");
  for (const auto& w : watches) m.sample("ws_probe_connects_total", {{"target", w.target}}, static_cast<double>(w.connects));
  m.family("ws_probe_disconnects_total", "counter",
           "Ends of the watch's connections (failed connects included), by the verdict's cause.");
  for (const auto& w : watches) {
    for (const auto& [cause, n] : w.disconnects)
      m.sample("ws_probe_disconnects_total", {{"target", w.target}, {"cause", cause}}, static_cast<double>(n));
  }
  m.family("ws_probe_confirmations_total", "counter", "Trial connections run to settle an ambiguous end.");
  for (const auto& w : watches)
    m.sample("ws_probe_confirmations_total", {{"target", w.target}}, static_cast<double>(w.confirmations));
  m.family("ws_probe_last_message_age_seconds", "gauge", "Seconds since the watch last received a data message.");
  for (const auto& w : watches) {
    if (w.last_message_age_s) m.sample("ws_probe_last_message_age_seconds", {{"target", w.target}}, *w.last_message_age_s);
  }
  m.family("ws_probe_messages_total", "counter", "Data messages the watch received.");
  for (const auto& w : watches) m.sample("ws_probe_messages_total", {{"target", w.target}}, static_cast<double>(w.messages));
  // Only for watches that ping: an all-zero histogram per watch would be
  // most of the scrape (13 series each).
  bool any_pings = false;
  for (const auto& w : watches) any_pings = any_pings || w.pings;
  if (!any_pings) return m.text();
  m.family("ws_probe_ping_rtt_seconds", "histogram", "Round trips of the watch's pings (its module's ping).");
  for (const auto& w : watches) {
    if (!w.pings) continue;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kRttBucketCount; ++i) {
      cumulative += w.rtt_buckets[i];
      m.sample("ws_probe_ping_rtt_seconds_bucket", {{"target", w.target}, {"le", bucket_text(kRttBuckets[i])}},
               static_cast<double>(cumulative));
    }
    m.sample("ws_probe_ping_rtt_seconds_bucket", {{"target", w.target}, {"le", "+Inf"}}, static_cast<double>(w.rtt_count));
    m.sample("ws_probe_ping_rtt_seconds_sum", {{"target", w.target}}, w.rtt_sum_s);
    m.sample("ws_probe_ping_rtt_seconds_count", {{"target", w.target}}, static_cast<double>(w.rtt_count));
  }
  return m.text();
}

}  // namespace smws::net
