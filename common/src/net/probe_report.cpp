// SPDX-License-Identifier: Apache-2.0
#include "smws/net/probe_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "smws/ascii.h"
#include "smws/exit_code.h"
#include "smws/probe_verdict.h"
#include "smws/terminal_text.h"
#include "smws/utf8.h"

namespace smws::net {
namespace {

using json = ReportJson;

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}


std::string bytes_text(size_t n) {
  if (n < 10 * 1024) return std::to_string(n) + " B";
  if (n < 10 * 1024 * 1024) return fmt("%.1f KiB", static_cast<double>(n) / 1024);
  return fmt("%.1f MiB", static_cast<double>(n) / (1024 * 1024));
}

// Rounded for reports: milliseconds to 0.001, seconds to 0.001.
double r3(double v) { return std::round(v * 1000) / 1000; }

const char* opcode_text(ws::Opcode op) { return ws::opcode_name(op); }

}  // namespace

std::string seconds_text(double s) { return s >= 10 ? fmt("%.1f s", s) : fmt("%.2f s", s); }
std::string millis_text(double ms) { return ms >= 100 ? fmt("%.0f ms", ms) : fmt("%.1f ms", ms); }

std::string frame_line(const FrameEvent& f) {
  std::string line = fmt("%+9.3fs ", f.at_s) + (f.incoming ? "<- " : "-> ") + opcode_text(f.opcode) + " " +
                     std::to_string(f.size) + " B";
  if (!f.detail.empty()) line += "  " + f.detail;
  return line;
}

namespace {

// --- the JSON report -------------------------------------------------------

json optional_number(const std::optional<double>& v) { return v ? json(r3(*v)) : json(nullptr); }

json stats_json(const std::vector<double>& values) {
  if (values.empty()) return nullptr;
  double mn = *std::min_element(values.begin(), values.end());
  double mx = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  return {{"count", values.size()}, {"min", r3(mn)}, {"avg", r3(sum / static_cast<double>(values.size()))}, {"max", r3(mx)}};
}

bool was_open(const ProbeResult& r) { return r.handshake.outcome == HandshakeInfo::Outcome::kOpen; }

// `confirm`: null when one cause fitted; else what was planned and, when it
// ran, what the trial showed.
json confirm_json(const ProbeResult& r) {
  if (!r.confirm) return nullptr;
  const auto& c = *r.confirm;
  json out = {{"tried", c.tried},
              {"candidates", c.plan.candidates},
              {"first_age_s", r3(c.plan.first_age_s)},
              {"first_silence_s", r3(c.plan.first_silence_s)},
              {"ping_every_s", c.plan.ping_every_s},
              {"hold_s", r3(c.plan.hold_s)},
              {"command", c.plan.command}};
  if (c.tried) {
    out["outcome"] = c.outcome;
    out["trial_age_s"] = r3(c.trial_age_s);
    out["trial_end"] = c.trial_end;
    out["trial_cause"] = c.trial_cause;
    out["trial_pings_sent"] = c.trial_pings;
    out["trial_pongs_received"] = c.trial_pongs;
    out["settled"] = c.settled.empty() ? json(nullptr) : json(c.settled);
  } else {
    out["skipped"] = "--no-confirm";
  }
  return out;
}

}  // namespace

ReportJson report_json(const ProbeResult& r, const std::string& url) {
  const auto& e = r.evidence;
  const auto& h = r.handshake;
  json headers = json::object();
  for (const auto& [name, value] : h.headers) {
    const std::string key = ascii_lower(name);
    if (headers.contains(key)) {
      headers[key] = headers[key].get<std::string>() + ", " + value;
    } else {
      headers[key] = value;
    }
  }
  json intermediaries = json::array();
  for (const auto& i : r.intermediaries) intermediaries.push_back({{"name", i.name}, {"evidence", i.evidence}});
  json frames = json::array();
  for (const auto& f : r.frames) {
    frames.push_back({{"t", r3(f.at_s)}, {"dir", f.incoming ? "in" : "out"}, {"op", opcode_text(f.opcode)},
                      {"size", f.size}, {"detail", f.detail}});
  }
  json close;
  if (was_open(r)) {
    auto since = [&](const std::optional<double>& t) -> json {
      return t ? json(r3(std::max(0.0, e.end_s - *t))) : json(nullptr);
    };
    close = {{"code", e.close_code},
             {"reason", e.close_reason},
             {"by", close_by_name(e.close_by)},
             {"tcp_end", e.tcp_end == TcpEnd::kNone ? json(nullptr) : json(tcp_end_name(e.tcp_end))},
             {"after_s", r3(e.end_s)},
             {"since_last_frame_s", r3(e.silence_before_end_s())},
             {"since_last_frame_in_s", since(e.last_frame_in_s)},
             {"since_last_frame_out_s", since(e.last_frame_out_s)},
             {"server_answered_close", e.close_by == CloseBy::kClient ? json(e.server_answered_close) : json(nullptr)}};
    if (!e.protocol_error.empty()) close["protocol_error"] = e.protocol_error;
    if (!r.tcp_error.empty()) close["tcp_error"] = r.tcp_error;
  } else {
    close = {{"code", nullptr}, {"reason", ""}, {"by", "none"}, {"tcp_end", nullptr},
             {"after_s", r3(e.end_s)}, {"since_last_frame_s", nullptr}};
  }
  json findings = json::array();
  for (const auto& f : r.verdict.findings) findings.push_back(f);
  json out = {
      {"url", url},
      {"connection", r.index},
      {"peer", h.peer.empty() ? json(nullptr) : json(h.peer)},
      {"connect_ms", h.connect_ms < 0 ? json(nullptr) : json(r3(h.connect_ms))},
      {"handshake_ms", h.handshake_ms < 0 ? json(nullptr) : json(r3(h.handshake_ms))},
      {"tls_ms", h.tls_ms < 0 ? json(nullptr) : json(r3(h.tls_ms))},
      {"status", h.status == 0 ? json(nullptr) : json(h.status)},
      {"status_line", h.status_line},
      {"headers", headers},
      {"subprotocol", h.subprotocol.empty() ? json(nullptr) : json(h.subprotocol)},
      {"extensions", h.extensions.empty() ? json(nullptr) : json(h.extensions)},
      {"inflated", e.inflated},
      {"intermediaries", intermediaries},
      {"messages", e.messages_in},
      {"messages_sent", e.messages_out},
      {"bytes_received", r.bytes_in},
      {"bytes_sent", r.bytes_out},
      {"types", r.types},
      {"first_message_s", optional_number(e.first_message_s)},
      {"last_message_s", optional_number(e.last_message_s)},
      {"pings_received", e.pings_received},
      {"pings_answered", e.pings_answered},
      {"app_pings_received", e.app_pings_received},
      {"app_pongs_sent", e.app_pongs_sent},
      {"pings_sent", e.pings_sent},
      {"pongs_received", e.pongs_received},
      {"rtt_ms", stats_json(r.rtt_ms)},
      {"longest_gap_s", r3(e.longest_gap_s)},
      {"longest_gap_at_s", r3(e.longest_gap_at_s)},
      {"timestamp_lag", {{"stamped", e.lags.stamped}, {"min_lag_s", r3(e.lags.min_lag_s)},
                         {"worst_excess_s", r3(e.lags.worst_excess_s)}, {"worst_at_s", r3(e.lags.worst_at_s)},
                         {"late", e.lags.late}, {"ignored", e.lags.ignored}}},
      {"close", close},
      {"frames", frames},
      {"frames_total", r.frames_total},
      {"confirm", confirm_json(r)},
      {"verdict", {{"cause", r.verdict.cause}, {"text", r.verdict.text}, {"findings", findings},
                   {"candidates", r.verdict.candidates}}},
      {"exit_code", r.verdict.exit_code},
  };
  if (!h.body.empty()) out["body"] = is_valid_utf8(h.body) ? h.body : std::string("(binary)");
  if (r.bad_input_lines > 0) out["bad_input_lines"] = r.bad_input_lines;
  return out;
}

namespace {

// --- the human report -------------------------------------------------------


// Word-wraps text to lines of at most `width` columns, each starting with `indent`.
std::string wrap(const std::string& text, const std::string& indent, size_t width = 100) {
  std::string out, current;
  std::istringstream words(text);
  for (std::string word; words >> word;) {
    if (!current.empty() && indent.size() + current.size() + 1 + word.size() > width) {
      out += indent + current + "\n";
      current.clear();
    }
    current += (current.empty() ? "" : " ") + word;
  }
  if (!current.empty()) out += indent + current + "\n";
  return out;
}

void line(std::string& out, const char* label, const std::string& text) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "  %-12s ", label);
  out += buf;
  out += text;
  out += '\n';
}

}  // namespace

std::string timeline_strip(const ProbeResult& r) {
  const auto& e = r.evidence;
  const double start = r.frames_total > r.frames.size() && !r.frames.empty() ? r.frames.front().at_s
                                                                              : e.handshake_done_s;
  const double span = std::max(e.end_s - start, 0.001);
  std::string bar(kTimelineColumns, '.');
  auto rank = [](char c) {
    static const std::string order = ".op>MX";
    return order.find(c);
  };
  auto put = [&](double t, char c) {
    double x = (t - start) / span * static_cast<double>(kTimelineColumns);
    size_t col = static_cast<size_t>(std::clamp(x, 0.0, static_cast<double>(kTimelineColumns - 1)));
    if (rank(c) > rank(bar[col])) bar[col] = c;
  };
  for (const auto& f : r.frames) {
    using ws::Opcode;
    char c = '.';
    switch (f.opcode) {
      case Opcode::kText:
      case Opcode::kBinary:
      case Opcode::kContinuation: c = f.incoming ? 'M' : '>'; break;
      case Opcode::kPing: c = f.incoming ? 'p' : 'o'; break;
      case Opcode::kPong: c = f.incoming ? 'p' : 'o'; break;
      case Opcode::kClose: c = 'X'; break;
    }
    put(f.at_s, c);
  }
  char end = '=';
  if (e.ending == Ending::kDropped) end = e.tcp_end == TcpEnd::kRst ? 'R' : 'F';
  else if (e.ending == Ending::kServerClose || e.ending == Ending::kProtocolError) end = 'X';
  bar.back() = end;
  std::string out;
  line(out, "timeline", "|" + bar + "| " + seconds_text(e.end_s - start));
  out += wrap(std::string(r.frames_total > r.frames.size()
                              ? "starts at +" + seconds_text(start) + " (older frames not kept)"
                              : "starts at the end of the handshake") +
                  ", 1 column = " + seconds_text(span / kTimelineColumns) +
                  "; legend: M message in, > message out, p ping/pong in, o ping/pong out, X close frame, "
                  ". no frame; the end: F FIN, R RST, X close frame, = open until the probe closed it",
              std::string(15, ' '));
  return out;
}

std::string report_text(const ProbeResult& r, const std::string& url, int verbosity) {
  const auto& e = r.evidence;
  const auto& h = r.handshake;
  std::string out = "ws-probe " + url + "\n";
  if (h.connect_ms >= 0) {
    line(out, "connect", millis_text(h.connect_ms) + " to " + h.peer);
  } else {
    line(out, "connect", "failed" + (h.peer.empty() ? std::string() : " (" + h.peer + ")"));
  }
  if (h.status != 0 || h.handshake_ms >= 0) {
    std::string text = h.handshake_ms >= 0 ? millis_text(h.handshake_ms) : std::string("-");
    if (h.tls_ms >= 0) text += " (TLS " + millis_text(h.tls_ms) + ")";
    if (!h.status_line.empty()) text += "  " + h.status_line;
    line(out, "handshake", text);
  }
  if (verbosity >= 1 && !h.request_head.empty()) {
    out += "  request:\n";
    std::istringstream in(h.request_head);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      if (!l.empty()) out += "    > " + redact_url_token(l) + "\n";  // the request line's ?token=
    }
  }
  if (verbosity >= 1 && !h.headers.empty()) {
    out += "  response:\n    < " + h.status_line + "\n";
    for (const auto& [name, value] : h.headers) out += "    < " + name + ": " + value + "\n";
  }
  if (!h.body.empty()) {
    std::string body = h.body.substr(0, 200);
    std::replace(body.begin(), body.end(), '\n', ' ');
    std::replace(body.begin(), body.end(), '\r', ' ');
    line(out, "body", is_valid_utf8(body) ? body : "(binary)");
  }
  if (was_open(r)) {
    line(out, "subprotocol", h.subprotocol.empty() ? "(none)" : h.subprotocol);
    if (!h.extensions.empty()) line(out, "extensions", h.extensions + "  (accepted the --deflate offer)");
  }
  if (!r.intermediaries.empty()) {
    std::string text;
    for (const auto& i : r.intermediaries) text += (text.empty() ? "" : "; ") + i.name + " (" + i.evidence + ")";
    line(out, "in between", text);
  }
  if (was_open(r)) {
    std::string text = std::to_string(e.messages_in) + " received, " + bytes_text(r.bytes_in);
    if (e.first_message_s)
      text += ", first +" + seconds_text(*e.first_message_s) + ", last +" + seconds_text(*e.last_message_s);
    line(out, "messages", text);
    if (!r.types.empty()) {
      std::vector<std::pair<std::string, size_t>> types(r.types.begin(), r.types.end());
      std::sort(types.begin(), types.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      std::string t;
      for (size_t i = 0; i < types.size() && i < 8; ++i)
        t += (i ? ", " : "") + types[i].first + " " + std::to_string(types[i].second);
      if (types.size() > 8) t += ", ... (" + std::to_string(types.size()) + " types)";
      line(out, "types", t);
    }
    line(out, "sent", std::to_string(e.messages_out) + " messages, " + bytes_text(r.bytes_out));
    std::string pings = std::to_string(e.pings_received) + " received, " + std::to_string(e.pings_answered) + " answered";
    if (e.app_pings_received > 0)
      pings += "; " + std::to_string(e.app_pings_received) + " {\"type\":\"ping\"}, " +
               std::to_string(e.app_pongs_sent) + " answered";
    line(out, "pings", pings);
    if (e.pings_sent > 0) {
      std::string rtt = std::to_string(e.pings_sent) + " sent, " + std::to_string(r.rtt_ms.size()) + " answered";
      if (!r.rtt_ms.empty()) {
        double mn = *std::min_element(r.rtt_ms.begin(), r.rtt_ms.end());
        double mx = *std::max_element(r.rtt_ms.begin(), r.rtt_ms.end());
        double sum = 0;
        for (double v : r.rtt_ms) sum += v;
        rtt += "; RTT min " + millis_text(mn) + " / avg " + millis_text(sum / static_cast<double>(r.rtt_ms.size())) +
               " / max " + millis_text(mx);
      }
      line(out, "ping RTT", rtt);
    }
    if (e.messages_in + e.pings_received > 0) {
      std::string gap = seconds_text(e.longest_gap_s) + " without a frame from the server, ending at +" +
                        seconds_text(e.longest_gap_at_s);
      line(out, "longest gap", gap);
    }
    if (e.lags.stamped > 0) {
      line(out, "lag", std::to_string(e.lags.stamped) + " timestamped messages; worst " +
                           seconds_text(e.lags.worst_excess_s) + " over the smallest lag (at +" +
                           seconds_text(e.lags.worst_at_s) + "), " +
                           std::to_string(e.lags.late) + " more than 1 s late" +
                           (e.lags.ignored ? "; " + std::to_string(e.lags.ignored) +
                                                 " stamped before the connection (history) left out"
                                           : std::string()));
    }
    std::string ended;
    if (e.ending == Ending::kDropped) {
      ended = "1006 abnormal closure: no close frame, " +
              std::string(e.tcp_end == TcpEnd::kRst ? "TCP RST" : "TCP FIN") +
              " from the peer (server or proxy)";
      if (!r.tcp_error.empty()) ended += " (" + r.tcp_error + ")";
    } else {
      ended = std::to_string(e.close_code) + (e.close_reason.empty() ? "" : " \"" + e.close_reason + "\"") +
              (e.close_by == CloseBy::kServer ? " from the server" : " from the probe");
      if (e.close_by == CloseBy::kClient)
        ended += e.server_answered_close ? ", answered" : ", not answered by the server";
    }
    ended += "; +" + seconds_text(e.end_s) + " after connect, " + seconds_text(e.silence_before_end_s()) +
             " after the last frame";
    if (e.last_frame_in_s) ended += " (in " + seconds_text(e.end_s - *e.last_frame_in_s);
    else ended += " (in -";
    if (e.last_frame_out_s) ended += ", out " + seconds_text(e.end_s - *e.last_frame_out_s) + ")";
    else ended += ", out -)";
    line(out, "ended", ended);
    if (verbosity >= 1 && !r.frames.empty()) {
      size_t show = std::min<size_t>(r.frames.size(), verbosity >= 2 ? r.frames.size() : 12);
      out += "  last " + std::to_string(show) + " of " + std::to_string(r.frames_total) + " frames:\n";
      for (size_t i = r.frames.size() - show; i < r.frames.size(); ++i) out += "    " + frame_line(r.frames[i]) + "\n";
    }
  }
  if (r.confirm && r.confirm->tried) {
    const auto& c = *r.confirm;
    line(out, "confirm", "a 2nd connection pinging every " + seconds_text(c.plan.ping_every_s) + ", held up to " +
                             seconds_text(c.plan.hold_s) + ": " + c.trial_end + " after " +
                             seconds_text(c.trial_age_s) + " (" + c.outcome + ")");
  }
  out += "\nverdict: " + r.verdict.cause;
  if (r.verdict.candidates.size() > 1) {
    out += " (or " + r.verdict.candidates[1] + ": unconfirmed)";
  }
  out += "\n" + wrap(r.verdict.text, "  ");
  for (const auto& f : r.verdict.findings) out += wrap("note: " + f, "  ");
  if (was_open(r)) out += "\n" + timeline_strip(r);
  return out;
}

namespace {

// --- several connections ----------------------------------------------------



}  // namespace

ProbeSummary summarise(const std::vector<ProbeResult>& results) {
  ProbeSummary s;
  std::map<int, size_t> exits;
  for (const auto& r : results) {
    ++s.causes[r.verdict.cause];
    if (!s.example.count(r.verdict.cause)) s.example[r.verdict.cause] = &r;
    if (was_open(r)) {
      ++s.close_codes[std::to_string(r.evidence.close_code)];
      if (r.evidence.tcp_end != TcpEnd::kNone) ++s.tcp_end[tcp_end_name(r.evidence.tcp_end)];
    }
    if (r.handshake.connect_ms >= 0) s.connect_ms.push_back(r.handshake.connect_ms);
    if (r.handshake.handshake_ms >= 0) s.handshake_ms.push_back(r.handshake.handshake_ms);
    ++exits[r.verdict.exit_code];
  }
  if (exits.size() == 1) {
    s.exit_code = exits.begin()->first;
  } else {
    s.exit_code = kExitNegative;
  }
  size_t best = 0;
  for (const auto& [cause, n] : s.causes) {
    if (cause != "healthy" && n > best) {
      best = n;
      s.cause = cause;
    }
  }
  if (s.cause.empty()) s.cause = "healthy";
  const size_t healthy = s.causes.count("healthy") ? s.causes.at("healthy") : 0;
  if (s.cause == "healthy") {
    s.text = "All " + std::to_string(results.size()) + " connections were healthy.";
  } else {
    s.text = std::to_string(results.size() - healthy) + " of " + std::to_string(results.size()) +
             " connections were unhealthy; the most frequent cause, " + s.cause + " (" + std::to_string(best) +
             "): " + s.example.at(s.cause)->verdict.text;
  }
  // Drops at the same age on every connection: deterministic, so a timer
  // somewhere (docs/troubleshooting-1006.md, "Other ambiguous cases").
  std::vector<double> ages;
  for (const auto& r : results) {
    if (r.verdict.cause == s.cause && r.evidence.ending == Ending::kDropped) ages.push_back(r.evidence.age_s());
  }
  if (ages.size() >= 2 && ages.size() == s.causes.at(s.cause)) {
    const auto [lo, hi] = std::minmax_element(ages.begin(), ages.end());
    double mean = 0;
    for (double a : ages) mean += a;
    mean /= static_cast<double>(ages.size());
    if (*hi - *lo <= std::max(kSameAgeMin, kSameAgeFraction * mean)) {
      s.findings.push_back("All " + std::to_string(ages.size()) + " " + s.cause + " drops came at the same age, " +
                           seconds_text(*lo) + " to " + seconds_text(*hi) +
                           " after the handshake: that is a timer, not chance " +
                           "(a crash does not keep time) — a maximum connection lifetime, a firewall or NAT " +
                           "session limit, a proxy's tunnel timeout. Look for a setting of about " +
                           seconds_text(mean) + " on the path.");
    }
  }
  return s;
}

ReportJson summary_json(const ProbeSummary& s, const std::vector<ProbeResult>& results, const RunInfo& o) {
  json list = json::array();
  for (const auto& r : results) list.push_back(report_json(r, o.url));
  return {{"url", o.url},
          {"connections", o.connections},
          {"repeat", o.repeat},
          {"total", results.size()},
          {"summary", {{"causes", s.causes}, {"close_codes", s.close_codes}, {"tcp_end", s.tcp_end},
                       {"connect_ms", stats_json(s.connect_ms)}, {"handshake_ms", stats_json(s.handshake_ms)}}},
          {"results", list},
          {"verdict", {{"cause", s.cause}, {"text", s.text}, {"findings", s.findings}}},
          {"exit_code", s.exit_code}};
}

std::string summary_text(const ProbeSummary& s, const std::vector<ProbeResult>& results, const RunInfo& o, int verbosity) {
  std::string out = "ws-probe " + o.url + ": " + std::to_string(results.size()) + " connections";
  if (o.connections > 1) out += " (" + std::to_string(o.connections) + " at once";
  if (o.repeat > 1) out += std::string(o.connections > 1 ? ", " : " (") + std::to_string(o.repeat) + " rounds";
  if (o.connections > 1 || o.repeat > 1) out += ")";
  out += "\n";
  auto stats = [](const std::vector<double>& v) {
    if (v.empty()) return std::string("-");
    double sum = 0;
    for (double x : v) sum += x;
    return "min " + millis_text(*std::min_element(v.begin(), v.end())) + " / avg " +
           millis_text(sum / static_cast<double>(v.size())) + " / max " +
           millis_text(*std::max_element(v.begin(), v.end()));
  };
  line(out, "connect", stats(s.connect_ms));
  line(out, "handshake", stats(s.handshake_ms));
  std::string causes;
  for (const auto& [cause, n] : s.causes) causes += (causes.empty() ? "" : ", ") + cause + " " + std::to_string(n);
  line(out, "verdicts", causes);
  std::string codes;
  for (const auto& [code, n] : s.close_codes) codes += (codes.empty() ? "" : ", ") + code + " x" + std::to_string(n);
  if (!codes.empty()) line(out, "close codes", codes);
  std::string ends;
  for (const auto& [end, n] : s.tcp_end) ends += (ends.empty() ? "" : ", ") + end + " x" + std::to_string(n);
  if (!ends.empty()) line(out, "tcp end", ends);
  if (verbosity >= 1) {
    for (const auto& r : results) {
      out += fmt("    #%-4.0f ", static_cast<double>(r.index)) + r.verdict.cause;
      if (was_open(r)) {
        out += "  " + std::to_string(r.evidence.close_code) + " +" + seconds_text(r.evidence.end_s) + ", " +
               std::to_string(r.evidence.messages_in) + " messages";
      } else if (!r.evidence.error.empty()) {
        out += "  " + r.evidence.error;
      }
      out += "\n";
    }
  }
  out += "\nverdict: " + s.cause + "\n" + wrap(s.text, "  ");
  for (const auto& f : s.findings) out += wrap("note: " + f, "  ");
  for (const auto& [cause, r] : s.example) {
    if (cause != s.cause && cause != "healthy") out += wrap("also " + cause + ": " + r->verdict.text, "  ");
  }
  return out;
}

// --- --find-idle-timeout ---------------------------------------------------------

Verdict idle_search_verdict(const IdleSearchRun& run) {
  Verdict v;
  const auto& search = run.search;
  const std::string trials = std::to_string(search.trials()) + (search.trials() == 1 ? " trial" : " trials");
  if (!search.upper_s()) {
    v.cause = "healthy";
    v.exit_code = kExitOk;
    v.text = "No idle timeout up to " + seconds_text(run.max_s) + ": a silent connection stayed open for " +
             seconds_text(search.lower_s()) + " without a frame (" + trials + ").";
    if (search.lower_s() + 1 < run.max_s && run.server_traffic)
      v.text += " The server sent frames during the hold, so the longest silence was shorter than the maximum.";
    return v;
  }
  const double upper = *search.upper_s();
  v.cause = "idle_timeout";
  v.exit_code = kExitNegative;
  v.text = "The path drops a silent connection after " + seconds_text(upper) + " without a frame";
  if (search.lower_s() > 0) {
    v.text += " and keeps one that was silent for " + seconds_text(search.lower_s()) +
              ": the idle timeout is between the two, known to " + seconds_text(*search.precision_s()) + " after " +
              trials + ".";
  } else {
    v.text += " (" + trials + "; no shorter silence was held, so only the upper bound is known).";
  }
  v.text += " " + idle_timeout_advice(run.intermediaries, upper);
  return v;
}

ReportJson idle_search_json(const IdleSearchRun& run, const std::string& url) {
  json trials = json::array();
  for (const auto& t : run.trials) {
    trials.push_back({{"hold_s", r3(t.hold_s)}, {"survived", t.survived}, {"silence_s", r3(t.silence_s)},
                      {"close_code", t.close_code},
                      {"tcp_end", t.tcp_end == TcpEnd::kNone ? json(nullptr) : json(tcp_end_name(t.tcp_end))},
                      {"cause", t.cause}});
  }
  const auto upper = run.search.upper_s();
  const auto precision = run.search.precision_s();
  json matches = json::array();
  if (upper) {
    for (const auto& m : match_idle_default(*upper))
      matches.push_back({{"name", m.name}, {"seconds", m.seconds}, {"fix", m.fix}});
  }
  json intermediaries = json::array();
  for (const auto& i : run.intermediaries) intermediaries.push_back({{"name", i.name}, {"evidence", i.evidence}});
  const auto verdict = idle_search_verdict(run);
  json out = {{"url", url},
              {"connect_ms", run.connect_ms < 0 ? json(nullptr) : json(r3(run.connect_ms))},
              {"handshake_ms", run.handshake_ms < 0 ? json(nullptr) : json(r3(run.handshake_ms))},
              {"status", run.status == 0 ? json(nullptr) : json(run.status)},
              {"intermediaries", intermediaries},
              {"find_idle_timeout", {{"max_s", run.max_s},
                                     {"trials", trials},
                                     {"trial_count", run.search.trials()},
                                     {"lower_s", r3(run.search.lower_s())},
                                     {"upper_s", upper ? json(r3(*upper)) : json(nullptr)},
                                     {"idle_timeout_s", upper ? json(r3(*upper)) : json(nullptr)},
                                     {"precision_s", precision ? json(r3(*precision)) : json(nullptr)},
                                     {"tolerance_s", r3(run.search.tolerance_s())},
                                     {"matches", matches}}},
              {"verdict", {{"cause", verdict.cause}, {"text", verdict.text}}},
              {"exit_code", verdict.exit_code}};
  return out;
}

std::string idle_search_text(const IdleSearchRun& run, const std::string& url) {
  std::string out = "ws-probe " + url + ": idle timeout search up to " + seconds_text(run.max_s) + "\n";
  int n = 0;
  for (const auto& t : run.trials) {
    out += "  trial " + std::to_string(++n) + ": held " + seconds_text(t.hold_s) + ", " +
           (t.survived ? "survived " + seconds_text(t.silence_s) + " of silence"
                       : "dropped after " + seconds_text(t.silence_s) + " of silence (" + std::to_string(t.close_code) +
                             (t.tcp_end != TcpEnd::kNone ? std::string(" ") + tcp_end_name(t.tcp_end) : "") +
                             ")") +
           "\n";
  }
  if (const auto precision = run.search.precision_s()) {
    line(out, "bracket", seconds_text(run.search.lower_s()) + " .. " + seconds_text(*run.search.upper_s()) +
                             " (precision " + seconds_text(*precision) + ", " + std::to_string(run.search.trials()) +
                             " trials)");
  }
  if (!run.intermediaries.empty()) {
    std::string names;
    for (const auto& i : run.intermediaries) names += (names.empty() ? "" : "; ") + i.name + " (" + i.evidence + ")";
    line(out, "in between", names);
  }
  const auto verdict = idle_search_verdict(run);
  out += "\nverdict: " + verdict.cause + "\n" + wrap(verdict.text, "  ");
  return out;
}

}  // namespace smws::net
