#include "ws_probe.h"

#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>

#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/net/probe.h"
#include "smws/probe_verdict.h"
#include "smws/shutdown.h"

namespace ws_probe {
namespace {

// Reports keep their fields in the documented order (url first, verdict last).
using json = nlohmann::ordered_json;
using smws::core::Ending;
using smws::net::FrameEvent;
using smws::net::HandshakeInfo;
using smws::net::ProbeResult;

// find-idle-timeout stops narrowing when the bounds are this close (5% of
// the timeout, at least 0.25 s: below that, scheduling noise dominates) or
// after this many trials.
constexpr double kIdleToleranceFraction = 0.05;
constexpr double kIdleToleranceMin = 0.25;
constexpr int kIdleMaxTrials = 8;

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string secs(double s) { return s >= 10 ? fmt("%.1f s", s) : fmt("%.2f s", s); }
std::string millis(double ms) { return ms >= 100 ? fmt("%.0f ms", ms) : fmt("%.1f ms", ms); }

std::string bytes_text(size_t n) {
  if (n < 10 * 1024) return std::to_string(n) + " B";
  if (n < 10 * 1024 * 1024) return fmt("%.1f KiB", static_cast<double>(n) / 1024);
  return fmt("%.1f MiB", static_cast<double>(n) / (1024 * 1024));
}

// Rounded for reports: milliseconds to 0.001, seconds to 0.001.
double r3(double v) { return std::round(v * 1000) / 1000; }

const char* opcode_text(smws::ws::Opcode op) { return smws::ws::opcode_name(op); }

std::string frame_line(const FrameEvent& f) {
  std::string line = fmt("%+9.3fs ", f.at_s) + (f.incoming ? "<- " : "-> ") + opcode_text(f.opcode) + " " +
                     std::to_string(f.size) + " B";
  if (!f.detail.empty()) line += "  " + f.detail;
  return line;
}

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

json report_json(const ProbeResult& r, const std::string& url) {
  const auto& e = r.evidence;
  const auto& h = r.handshake;
  json headers = json::object();
  for (const auto& [name, value] : h.headers) {
    std::string key = name;
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
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
             {"by", smws::core::close_by_name(e.close_by)},
             {"tcp_end", e.tcp_end == smws::core::TcpEnd::kNone ? json(nullptr) : json(smws::core::tcp_end_name(e.tcp_end))},
             {"after_s", r3(e.end_s)},
             {"since_last_frame_s", r3(e.silence_before_end_s())},
             {"since_last_frame_in_s", since(e.last_frame_in_s)},
             {"since_last_frame_out_s", since(e.last_frame_out_s)},
             {"server_answered_close", e.close_by == smws::core::CloseBy::kClient ? json(e.server_answered_close) : json(nullptr)}};
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
      {"verdict", {{"cause", r.verdict.cause}, {"text", r.verdict.text}, {"findings", findings}}},
      {"exit_code", r.verdict.exit_code},
  };
  if (!h.body.empty()) out["body"] = smws::is_valid_utf8(h.body) ? h.body : std::string("(binary)");
  if (r.bad_input_lines > 0) out["bad_input_lines"] = r.bad_input_lines;
  return out;
}

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

std::string report_text(const ProbeResult& r, const std::string& url, int verbosity) {
  const auto& e = r.evidence;
  const auto& h = r.handshake;
  std::string out = "ws-probe " + url + "\n";
  if (h.connect_ms >= 0) {
    line(out, "connect", millis(h.connect_ms) + " to " + h.peer);
  } else {
    line(out, "connect", "failed" + (h.peer.empty() ? std::string() : " (" + h.peer + ")"));
  }
  if (h.status != 0 || h.handshake_ms >= 0) {
    std::string text = h.handshake_ms >= 0 ? millis(h.handshake_ms) : std::string("-");
    if (h.tls_ms >= 0) text += " (TLS " + millis(h.tls_ms) + ")";
    if (!h.status_line.empty()) text += "  " + h.status_line;
    line(out, "handshake", text);
  }
  if (verbosity >= 1 && !h.request_head.empty()) {
    out += "  request:\n";
    std::istringstream in(h.request_head);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      if (!l.empty()) out += "    > " + l + "\n";
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
    line(out, "body", smws::is_valid_utf8(body) ? body : "(binary)");
  }
  if (was_open(r)) {
    line(out, "subprotocol", h.subprotocol.empty() ? "(none)" : h.subprotocol);
    if (!h.extensions.empty()) line(out, "extensions", h.extensions + "  (forced by the server: none offered)");
  }
  if (!r.intermediaries.empty()) {
    std::string text;
    for (const auto& i : r.intermediaries) text += (text.empty() ? "" : "; ") + i.name + " (" + i.evidence + ")";
    line(out, "in between", text);
  }
  if (was_open(r)) {
    std::string text = std::to_string(e.messages_in) + " received, " + bytes_text(r.bytes_in);
    if (e.first_message_s) text += ", first +" + secs(*e.first_message_s) + ", last +" + secs(*e.last_message_s);
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
        rtt += "; RTT min " + millis(mn) + " / avg " + millis(sum / static_cast<double>(r.rtt_ms.size())) +
               " / max " + millis(mx);
      }
      line(out, "ping RTT", rtt);
    }
    if (e.messages_in + e.pings_received > 0) {
      std::string gap = secs(e.longest_gap_s) + " without a frame from the server, ending at +" + secs(e.longest_gap_at_s);
      line(out, "longest gap", gap);
    }
    if (e.lags.stamped > 0) {
      line(out, "lag", std::to_string(e.lags.stamped) + " timestamped messages; worst " + secs(e.lags.worst_excess_s) +
                           " over the smallest lag (at +" + secs(e.lags.worst_at_s) + "), " +
                           std::to_string(e.lags.late) + " more than 1 s late" +
                           (e.lags.ignored ? "; " + std::to_string(e.lags.ignored) +
                                                 " stamped before the connection (history) left out"
                                           : std::string()));
    }
    std::string ended;
    if (e.close_by == smws::core::CloseBy::kNone) {
      ended = "1006 abnormal closure: no close frame, " +
              std::string(e.tcp_end == smws::core::TcpEnd::kRst ? "TCP RST" : "TCP FIN") +
              " from the peer (server or proxy)";
      if (!r.tcp_error.empty()) ended += " (" + r.tcp_error + ")";
    } else {
      ended = std::to_string(e.close_code) + (e.close_reason.empty() ? "" : " \"" + e.close_reason + "\"") +
              (e.close_by == smws::core::CloseBy::kServer ? " from the server" : " from the probe");
      if (e.close_by == smws::core::CloseBy::kClient)
        ended += e.server_answered_close ? ", answered" : ", not answered by the server";
    }
    ended += "; +" + secs(e.end_s) + " after connect, " + secs(e.silence_before_end_s()) + " after the last frame";
    if (e.last_frame_in_s) ended += " (in " + secs(e.end_s - *e.last_frame_in_s);
    else ended += " (in -";
    if (e.last_frame_out_s) ended += ", out " + secs(e.end_s - *e.last_frame_out_s) + ")";
    else ended += ", out -)";
    line(out, "ended", ended);
    if (verbosity >= 1 && !r.frames.empty()) {
      size_t show = std::min<size_t>(r.frames.size(), verbosity >= 2 ? r.frames.size() : 12);
      out += "  last " + std::to_string(show) + " of " + std::to_string(r.frames_total) + " frames:\n";
      for (size_t i = r.frames.size() - show; i < r.frames.size(); ++i) out += "    " + frame_line(r.frames[i]) + "\n";
    }
  }
  out += "\nverdict: " + r.verdict.cause + "\n" + wrap(r.verdict.text, "  ");
  for (const auto& f : r.verdict.findings) out += wrap("note: " + f, "  ");
  return out;
}

// --- several connections ----------------------------------------------------

struct Summary {
  std::map<std::string, size_t> causes;
  std::map<std::string, size_t> close_codes;
  std::map<std::string, size_t> tcp_end;
  std::vector<double> connect_ms, handshake_ms;
  std::map<std::string, const ProbeResult*> example;  // first result per cause
  int exit_code = smws::kExitOk;
  std::string cause;  // the most frequent unhealthy cause, or healthy
  std::string text;
};

Summary summarise(const std::vector<ProbeResult>& results) {
  Summary s;
  std::map<int, size_t> exits;
  for (const auto& r : results) {
    ++s.causes[r.verdict.cause];
    if (!s.example.count(r.verdict.cause)) s.example[r.verdict.cause] = &r;
    if (was_open(r)) {
      ++s.close_codes[std::to_string(r.evidence.close_code)];
      if (r.evidence.tcp_end != smws::core::TcpEnd::kNone) ++s.tcp_end[smws::core::tcp_end_name(r.evidence.tcp_end)];
    }
    if (r.handshake.connect_ms >= 0) s.connect_ms.push_back(r.handshake.connect_ms);
    if (r.handshake.handshake_ms >= 0) s.handshake_ms.push_back(r.handshake.handshake_ms);
    ++exits[r.verdict.exit_code];
  }
  if (exits.size() == 1) {
    s.exit_code = exits.begin()->first;
  } else {
    s.exit_code = smws::kExitNegative;
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
  return s;
}

json summary_json(const Summary& s, const std::vector<ProbeResult>& results, const ProbeOptions& o) {
  json list = json::array();
  for (const auto& r : results) list.push_back(report_json(r, o.url));
  return {{"url", o.url},
          {"connections", o.connections},
          {"repeat", o.repeat},
          {"total", results.size()},
          {"summary", {{"causes", s.causes}, {"close_codes", s.close_codes}, {"tcp_end", s.tcp_end},
                       {"connect_ms", stats_json(s.connect_ms)}, {"handshake_ms", stats_json(s.handshake_ms)}}},
          {"results", list},
          {"verdict", {{"cause", s.cause}, {"text", s.text}}},
          {"exit_code", s.exit_code}};
}

std::string summary_text(const Summary& s, const std::vector<ProbeResult>& results, const ProbeOptions& o, int verbosity) {
  std::string out = "ws-probe " + o.url + ": " + std::to_string(results.size()) + " connections";
  if (o.connections > 1) out += " (" + std::to_string(o.connections) + " at once";
  if (o.repeat > 1) out += std::string(o.connections > 1 ? ", " : " (") + std::to_string(o.repeat) + " rounds";
  if (o.connections > 1 || o.repeat > 1) out += ")";
  out += "\n";
  auto stats = [](const std::vector<double>& v) {
    if (v.empty()) return std::string("-");
    double sum = 0;
    for (double x : v) sum += x;
    return "min " + millis(*std::min_element(v.begin(), v.end())) + " / avg " +
           millis(sum / static_cast<double>(v.size())) + " / max " + millis(*std::max_element(v.begin(), v.end()));
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
        out += "  " + std::to_string(r.evidence.close_code) + " +" + secs(r.evidence.end_s) + ", " +
               std::to_string(r.evidence.messages_in) + " messages";
      } else if (!r.evidence.error.empty()) {
        out += "  " + r.evidence.error;
      }
      out += "\n";
    }
  }
  out += "\nverdict: " + s.cause + "\n" + wrap(s.text, "  ");
  for (const auto& [cause, r] : s.example) {
    if (cause != s.cause && cause != "healthy") out += wrap("also " + cause + ": " + r->verdict.text, "  ");
  }
  return out;
}

// --- output ----------------------------------------------------------------

// Writes all of text to fd; false on EPIPE or another error.
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void print(const std::string& text) { write_all(STDOUT_FILENO, text); }

// --- flag checks -------------------------------------------------------------

std::optional<std::string> check_options(const ProbeOptions& o) {
  if (o.connections == 0) return "--connections must be at least 1";
  if (o.repeat == 0) return "--repeat must be at least 1";
  if (o.cat && (o.connections > 1 || o.repeat > 1)) return "--cat works on one connection: drop --connections/--repeat";
  if (o.cat && o.json) return "--cat writes messages to stdout, --json the report: pick one";
  if (o.find_idle_timeout > 0) {
    if (o.cat || o.connections > 1 || o.repeat > 1 || !o.send.empty() || o.ping > 0 || o.no_pong)
      return "--find-idle-timeout holds silent connections: it cannot be combined with --cat, --connections, "
             "--repeat, --send, --ping or --no-pong";
  }
  if (o.no_pong && o.app_pong) return "--no-pong and --app-pong contradict each other";
  if (o.connect_timeout <= 0) return "--connect-timeout must be more than 0";
  for (const auto& h : o.headers) {
    size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0) return "-H '" + h + "': expected 'Name: value'";
  }
  return std::nullopt;
}

smws::net::ProbeConfig make_config(const ProbeOptions& o, const smws::net::WsUrl& url) {
  smws::net::ProbeConfig c;
  c.url = url;
  for (const auto& h : o.headers) {
    size_t colon = h.find(':');
    std::string name = h.substr(0, colon);
    std::string value = h.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    c.client.headers.emplace_back(name, value);
  }
  c.client.origin = o.origin;
  for (const auto& p : o.subprotocols) {
    std::stringstream in(p);
    for (std::string item; std::getline(in, item, ',');) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (!item.empty()) c.client.subprotocols.push_back(item);
    }
  }
  c.client.insecure = o.insecure;
  c.client.connect_timeout_s = o.connect_timeout;
  const bool duration_given = o.duration_option && o.duration_option->count() > 0;
  if (o.cat && !duration_given) {
    c.duration_s = std::nullopt;
  } else {
    c.duration_s = o.duration;
  }
  c.ping_interval_s = o.ping;
  c.answer_pings = !o.no_pong;
  c.app_pong = o.app_pong;
  c.send = o.send;
  c.cat = o.cat;
  return c;
}

// Enough file descriptors for --connections N (the soft limit is often 1024).
void raise_fd_limit(size_t connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  rlim_t want = static_cast<rlim_t>(connections) + 64;
  if (limit.rlim_cur >= want) return;
  limit.rlim_cur = std::min(want, limit.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < want)
    smws::log::warn("only " + std::to_string(limit.rlim_cur) + " file descriptors allowed (ulimit -n); " +
                    "some of the " + std::to_string(connections) + " connections will fail");
}

smws::net::ProbeHooks make_hooks(const ProbeOptions& o, bool single) {
  smws::net::ProbeHooks hooks;
  const int verbosity = o.common.verbosity();
  const bool tty = ::isatty(STDERR_FILENO);
  hooks.on_open = [single, verbosity, tty, &o](const ProbeResult& r) {
    if (!single && verbosity < 2) return;
    const auto& h = r.handshake;
    if (h.outcome != HandshakeInfo::Outcome::kOpen) return;  // the report says it
    if (verbosity >= 1 || (tty && !o.cat && verbosity >= 0)) {
      std::string what = "connected to " + h.peer + " in " + millis(h.connect_ms) + ", " + h.status_line + " in " +
                         millis(h.handshake_ms);
      if (!o.cat && o.find_idle_timeout <= 0) {
        what += "; listening for " + secs(o.duration) + " (Ctrl-C ends early)";
      }
      smws::log::note(0, what);
    }
  };
  if (verbosity >= 1) {
    hooks.on_frame = [verbosity](const ProbeResult& r, const FrameEvent& f) {
      bool control = f.opcode == smws::ws::Opcode::kPing || f.opcode == smws::ws::Opcode::kPong ||
                     f.opcode == smws::ws::Opcode::kClose;
      if (control || verbosity >= 2) smws::log::note(1, "#" + std::to_string(r.index) + " " + frame_line(f));
    };
  }
  if (o.cat) {
    hooks.on_message = [](std::string_view payload) {
      std::string line(payload);
      line += '\n';
      return write_all(STDOUT_FILENO, line);
    };
    hooks.on_bad_input = [](size_t line_number, const std::string& why) {
      smws::log::warn("stdin line " + std::to_string(line_number) + ": " + why);
    };
  }
  return hooks;
}

// --- --find-idle-timeout ---------------------------------------------------------

int find_idle_timeout(const ProbeOptions& o, const smws::net::ProbeConfig& base) {
  const int verbosity = o.common.verbosity();
  double lo = 0;                                       // longest silence a connection survived
  double hi = std::numeric_limits<double>::infinity(); // shortest silence at which one was dropped
  double hold = o.find_idle_timeout;
  json trials = json::array();
  std::string trial_text;
  const ProbeResult* first = nullptr;
  std::vector<ProbeResult> kept;
  kept.reserve(kIdleMaxTrials);
  bool server_traffic = false;

  for (int trial = 1; trial <= kIdleMaxTrials && !smws::shutdown::requested(); ++trial) {
    smws::net::ProbeConfig config = base;
    config.duration_s = hold;
    smws::log::note(0, "trial " + std::to_string(trial) + ": holding a silent connection for up to " + secs(hold));
    auto results = smws::net::run_probe(config, 1, make_hooks(o, true));
    if (results.empty()) break;
    kept.push_back(std::move(results.front()));
    const ProbeResult& r = kept.back();
    if (!first) first = &r;
    const auto& e = r.evidence;
    if (!was_open(r) || e.ending == Ending::kProtocolError) {
      // Cannot measure anything: report this connection as a normal probe would.
      if (o.json) {
        print(report_json(r, o.url).dump() + "\n");
      } else {
        print(report_text(r, o.url, verbosity));
      }
      return r.verdict.exit_code;
    }
    if (e.ending == Ending::kInterrupted) break;
    const double silence = e.silence_before_end_s();
    const bool survived = e.ending == Ending::kStillOpen;
    if (!survived && silence < smws::core::kMinIdleSilence) {
      // Ended before any idle timer could matter (a waiting server, a reset,
      // a close): that, not an idle timeout, is the finding.
      if (o.json) {
        print(report_json(r, o.url).dump() + "\n");
      } else {
        print(report_text(r, o.url, verbosity) +
              wrap("note: the connection ended after " + secs(silence) +
                       " of silence, too soon for an idle timeout; nothing to measure.",
                   "  "));
      }
      return r.verdict.exit_code;
    }
    if (e.messages_in > 0 && e.last_message_s && *e.last_message_s - e.handshake_done_s > smws::core::kGreetingWindow)
      server_traffic = true;
    if (survived) {
      lo = std::max(lo, silence);
    } else {
      hi = std::min(hi, silence);
    }
    trials.push_back({{"hold_s", r3(hold)}, {"survived", survived}, {"silence_s", r3(silence)},
                      {"close_code", e.close_code}, {"tcp_end", e.tcp_end == smws::core::TcpEnd::kNone
                                                                   ? json(nullptr)
                                                                   : json(smws::core::tcp_end_name(e.tcp_end))},
                      {"cause", r.verdict.cause}});
    trial_text += "  trial " + std::to_string(trial) + ": held " + secs(hold) + ", " +
                  (survived ? "survived " + secs(silence) + " of silence"
                            : "dropped after " + secs(silence) + " of silence (" + std::to_string(e.close_code) +
                                  (e.tcp_end != smws::core::TcpEnd::kNone ? std::string(" ") + smws::core::tcp_end_name(e.tcp_end) : "") +
                                  ")") +
                  "\n";
    if (std::isinf(hi)) break;  // survived the maximum: no idle timeout up to MAX
    const double tolerance = std::max(kIdleToleranceMin, kIdleToleranceFraction * hi);
    if (hi - lo <= tolerance) break;
    // Hold a silence just under the measured drop: surviving it brackets the
    // timeout within the tolerance; being dropped again lowers the bound.
    const double greeting = e.last_frame_in_s ? std::max(0.0, *e.last_frame_in_s - e.handshake_done_s) : 0.0;
    hold = std::max(lo, hi - tolerance / 2) + greeting;
  }

  json matches = json::array();
  std::string cause, text;
  int exit_code = smws::kExitOk;
  if (std::isinf(hi)) {
    cause = "healthy";
    text = "No idle timeout up to " + secs(o.find_idle_timeout) + ": a silent connection stayed open for " +
           secs(lo) + " without a frame.";
    if (lo + 1 < o.find_idle_timeout && server_traffic)
      text += " The server sent frames during the hold, so the longest silence was shorter than the maximum.";
  } else {
    cause = "idle_timeout";
    exit_code = smws::kExitNegative;
    auto found = smws::core::match_idle_default(hi);
    for (const auto& m : found) matches.push_back({{"name", m.name}, {"seconds", m.seconds}, {"fix", m.fix}});
    text = "The path drops a silent connection after " + secs(hi) + " without a frame";
    text += lo > 0 ? " (it survived " + secs(lo) + ")." : ".";
    if (!found.empty()) {
      text += " That matches " + smws::core::describe_idle_matches(found) + ". Fix: " + std::string(found.front().fix) + ".";
    } else {
      text += " It matches no well-known default (nginx/AWS ALB 60 s, Cloudflare 100 s, Azure LB 240 s, AWS NLB 350 s).";
    }
    text += " A ping from the server (or the client) more often than that keeps connections alive.";
  }
  if (o.json) {
    json out = {{"url", o.url},
                {"find_idle_timeout", {{"max_s", o.find_idle_timeout},
                                       {"trials", trials},
                                       {"lower_s", r3(lo)},
                                       {"upper_s", std::isinf(hi) ? json(nullptr) : json(r3(hi))},
                                       {"idle_timeout_s", std::isinf(hi) ? json(nullptr) : json(r3(hi))},
                                       {"matches", matches}}},
                {"verdict", {{"cause", cause}, {"text", text}}},
                {"exit_code", exit_code}};
    if (first) {
      out["connect_ms"] = r3(first->handshake.connect_ms);
      out["handshake_ms"] = r3(first->handshake.handshake_ms);
      out["status"] = first->handshake.status;
    }
    print(out.dump() + "\n");
  } else {
    std::string out = "ws-probe " + o.url + ": idle timeout search up to " + secs(o.find_idle_timeout) + "\n" + trial_text;
    if (first && !first->intermediaries.empty()) {
      std::string names;
      for (const auto& i : first->intermediaries) names += (names.empty() ? "" : "; ") + i.name + " (" + i.evidence + ")";
      line(out, "in between", names);
    }
    out += "\nverdict: " + cause + "\n" + wrap(text, "  ");
    print(out);
  }
  return exit_code;
}

// The help shows each flag's own type name ("SECONDS", "N"), not the
// validator's label appended to it.
CLI::Validator unlabelled(CLI::Validator v) {
  v.description("");
  return v;
}

}  // namespace

void setup_ws_probe(CLI::App& app, ProbeOptions& o) {
  app.add_option("URL", o.url, "ws:// or wss:// URL of the endpoint")->required();
  o.duration_option = app.add_option("--duration", o.duration,
                                     "Seconds to hold the connection (default 30; with --cat: until input ends)")
                          ->check(unlabelled(smws::kSeconds))
                          ->type_name("SECONDS");
  app.add_option("--ping", o.ping, "Send a ping every S seconds and report the RTT")
      ->check(unlabelled(smws::kSeconds))
      ->type_name("S");
  app.add_flag("--no-pong", o.no_pong, "Do not answer the server's pings");
  app.add_flag("--app-pong", o.app_pong, R"(Answer {"type":"ping"} messages with {"type":"pong"})");
  app.add_option("--send", o.send, "Send this text message after connecting (repeatable)")
      ->allow_extra_args(false)
      ->type_name("TEXT");
  app.add_option("-H,--header", o.headers, "Extra request header 'Name: value' (repeatable)")
      ->allow_extra_args(false)
      ->type_name("'K: V'");
  app.add_option("--origin", o.origin, "Origin header to send")->type_name("ORIGIN");
  app.add_option("--subprotocol", o.subprotocols, "Subprotocol to offer (repeatable or comma-separated)")
      ->allow_extra_args(false)
      ->type_name("NAME");
  app.add_flag("--insecure", o.insecure, "wss: skip certificate and host name checks");
  app.add_option("--connect-timeout", o.connect_timeout, "Seconds for TCP connect + TLS + upgrade (default 10)")
      ->check(unlabelled(smws::kSeconds))
      ->type_name("SECONDS");
  app.add_option("--connections", o.connections, "Hold N connections at once and summarise how they ended")
      ->check(unlabelled(CLI::PositiveNumber))
      ->type_name("N");
  app.add_option("--repeat", o.repeat, "Connect N times in a row and summarise")
      ->check(unlabelled(CLI::PositiveNumber))
      ->type_name("N");
  app.add_flag("--cat", o.cat, "Stdin lines become messages, messages become stdout lines");
  app.add_flag("--json", o.json, "Print the report as one JSON object");
  app.add_option("--find-idle-timeout", o.find_idle_timeout,
                 "Measure the path's idle timeout, up to MAX seconds, with silent connections")
      ->check(unlabelled(smws::kSeconds))
      ->type_name("MAX");
  smws::add_common_flags(app, o.common);
}

int run_ws_probe(const ProbeOptions& o) {
  smws::log::init("ws-probe", o.common.verbosity());
  if (auto problem = check_options(o)) {
    smws::log::error(*problem);
    return smws::kExitUsage;
  }
  std::string error;
  auto url = smws::net::parse_ws_url(o.url, &error);
  if (!url) {
    smws::log::error(error);
    return smws::kExitUsage;
  }
  const smws::net::ProbeConfig config = make_config(o, *url);
  if (o.find_idle_timeout > 0) return find_idle_timeout(o, config);

  raise_fd_limit(o.connections);
  const int verbosity = o.common.verbosity();
  const bool single = o.connections == 1 && o.repeat == 1;
  const auto hooks = make_hooks(o, single);
  std::vector<ProbeResult> results;
  for (size_t round = 0; round < o.repeat && !smws::shutdown::requested(); ++round) {
    auto batch = smws::net::run_probe(config, o.connections, hooks);
    for (auto& r : batch) {
      r.index = results.size();
      results.push_back(std::move(r));
    }
  }
  if (results.empty()) return smws::kExitOk;  // interrupted before the first connection

  if (single) {
    const ProbeResult& r = results.front();
    int exit_code = r.verdict.exit_code;
    if (r.bad_input_lines > 0 && exit_code == smws::kExitOk) exit_code = smws::kExitDataErr;
    if (o.json) {
      print(report_json(r, o.url).dump() + "\n");
    } else if (o.cat) {
      // stdout carries the data: the report goes to stderr, short unless -v.
      if (verbosity >= 1) {
        write_all(STDERR_FILENO, report_text(r, o.url, verbosity));
      } else if (verbosity >= 0 && r.verdict.cause != "healthy") {
        smws::log::warn(r.verdict.cause + ": " + r.verdict.text);
      }
    } else {
      print(report_text(r, o.url, verbosity));
    }
    return exit_code;
  }
  const Summary s = summarise(results);
  if (o.json) {
    print(summary_json(s, results, o).dump() + "\n");
  } else {
    print(summary_text(s, results, o, verbosity));
  }
  return s.exit_code;
}

}  // namespace ws_probe
