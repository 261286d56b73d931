// SPDX-License-Identifier: Apache-2.0
#include "ws_probe.h"

#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/listen_address.h"
#include "smws/log.h"
#include "smws/net/probe.h"
#include "smws/net/probe_exporter.h"
#include "smws/net/probe_report.h"
#include "smws/probe_modules.h"
#include "smws/probe_verdict.h"
#include "smws/shutdown.h"
#include "smws/terminal_text.h"

namespace ws_probe {
namespace {

using smws::net::FrameEvent;
using smws::net::HandshakeInfo;
using smws::net::ProbeResult;
using smws::net::frame_line;
using smws::net::millis_text;
using smws::net::report_json;
using smws::net::report_text;

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

// The human report quotes what the server sent (close reasons, message
// types, headers, the subprotocol): shown through terminal_safe, so a server
// cannot drive the operator's terminal. The report's own text has no control
// characters but newlines, so escaping all of it changes only the quotes.
void print_text(const std::string& text) { print(smws::terminal_safe(text)); }

// --json with ensure_ascii: JSON already escapes C0; this also writes C1, bidi
// marks and any other non-ASCII character as \uXXXX, so the object reads the
// same to a parser and is safe on a terminal. Invalid UTF-8 becomes U+FFFD.
std::string json_text(const smws::net::ReportJson& j) {
  return j.dump(-1, ' ', true, smws::net::ReportJson::error_handler_t::replace) + "\n";
}

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
  c.client.offer_deflate = o.deflate;
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
      std::string what = "connected to " + h.peer + " in " + millis_text(h.connect_ms) + ", " + h.status_line + " in " +
                         millis_text(h.handshake_ms);
      if (!o.cat && o.find_idle_timeout <= 0) {
        what += "; listening for " + smws::duration_text(o.duration) + " (Ctrl-C ends early)";
      }
      smws::log::note(0, smws::terminal_safe_line(what));  // the status line is the server's
    }
  };
  if (verbosity >= 1) {
    hooks.on_frame = [verbosity](const ProbeResult& r, const FrameEvent& f) {
      bool control = f.opcode == smws::ws::Opcode::kPing || f.opcode == smws::ws::Opcode::kPong ||
                     f.opcode == smws::ws::Opcode::kClose;
      if (control || verbosity >= 2) smws::log::note(1, "#" + std::to_string(r.index) + " " + smws::terminal_safe_line(frame_line(f)));
    };
  }
  if (o.cat) {
    // To a pipe the messages are data and go out byte for byte; to a
    // terminal they are shown through terminal_safe like the rest.
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    hooks.on_message = [tty](std::string_view payload) {
      std::string line = tty ? smws::terminal_safe(payload) : std::string(payload);
      line += '\n';
      return write_all(STDOUT_FILENO, line);
    };
    hooks.on_bad_input = [](size_t line_number, const std::string& why) {
      smws::log::warn("stdin line " + std::to_string(line_number) + ": " + smws::terminal_safe_line(why));
    };
  }
  return hooks;
}

// --- --find-idle-timeout ---------------------------------------------------------

int find_idle_timeout(const ProbeOptions& o, const std::string& shown_url, const smws::net::ProbeConfig& base) {
  const auto run = smws::net::find_idle_timeout(
      base, o.find_idle_timeout, make_hooks(o, true), [](int trial, double hold) {
        smws::log::note(0, "trial " + std::to_string(trial) + ": holding a silent connection for up to " +
                               smws::duration_text(hold));
      });
  if (run.stopped_by) {
    // Nothing to measure: report that connection as a normal probe would.
    const ProbeResult& r = *run.stopped_by;
    if (o.json) {
      print(json_text(smws::net::report_json(r, shown_url)));
    } else {
      std::string text = smws::net::report_text(r, shown_url, o.common.verbosity());
      if (!run.stopped_note.empty()) text += "  note: " + run.stopped_note + "\n";
      print_text(text);
    }
    return r.verdict.exit_code;
  }
  if (o.json) {
    print(json_text(smws::net::idle_search_json(run, shown_url)));
  } else {
    print_text(smws::net::idle_search_text(run, shown_url));
  }
  return smws::net::idle_search_verdict(run).exit_code;
}


// --- --serve -----------------------------------------------------------------

// The exporter: flags that make sense only for one probe are refused, the
// config is read and checked, watches are set up, then it serves until
// SIGINT/SIGTERM.
int serve(const ProbeOptions& o) {
  if (!o.url.empty()) {
    smws::log::error("--serve takes no URL: targets come with each /probe?target=…, or as --watch URL");
    return smws::kExitUsage;
  }
  if (o.cat || o.json || o.connections > 1 || o.repeat > 1 || o.find_idle_timeout > 0 || !o.send.empty() ||
      o.ping > 0 || o.no_pong || o.app_pong || !o.headers.empty() || !o.origin.empty() || !o.subprotocols.empty() ||
      o.insecure || o.deflate || o.no_confirm || (o.duration_option && o.duration_option->count() > 0)) {
    smws::log::error("--serve takes its probe settings from the --config modules (duration, send, headers, ping, "
                     "…), not from one-probe flags");
    return smws::kExitUsage;
  }
  if (o.connect_timeout <= 0) {
    smws::log::error("--connect-timeout must be more than 0");
    return smws::kExitUsage;
  }
  smws::ListenAddress listen;
  if (auto s = smws::parse_listen(o.serve, &listen); !s.ok()) {
    smws::log::error("--serve '" + o.serve + "': " + s.message);
    return smws::kExitUsage;
  }
  smws::ExporterConfig config = smws::default_exporter_config();
  if (!o.config_file.empty()) {
    std::ifstream in(o.config_file);
    if (!in) {
      smws::log::error("--config " + o.config_file + ": " + std::strerror(errno));
      return smws::kExitNoInput;
    }
    std::stringstream text;
    text << in.rdbuf();
    if (auto s = smws::parse_exporter_config(text.str(), &config); !s.ok()) {
      smws::log::error("--config " + o.config_file + ": " + s.message);
      return smws::kExitDataErr;
    }
  }
  for (const auto& url : o.watch) config.watch.push_back({url, ""});
  smws::net::ExporterOptions options;
  options.listen = listen;
  options.max_concurrent = o.max_concurrent;
  options.connect_timeout_s = o.connect_timeout;
  smws::net::Exporter exporter(config, options);
  for (const auto& w : config.watch) {
    if (auto s = exporter.add_watch(w); !s.ok()) {
      smws::log::error(smws::terminal_safe_line(s.message));
      return smws::kExitUsage;
    }
  }
  raise_fd_limit(o.max_concurrent * 2 + config.watch.size() * 2);
  if (auto s = exporter.start(); !s.ok()) {
    smws::log::error(s.message);
    return smws::exit_code_for(s);
  }
  const std::string base = "http://" +
                           (listen.host.find(':') != std::string::npos ? "[" + listen.host + "]" : listen.host) + ":" +
                           std::to_string(exporter.port());
  smws::log::note(0, "listening on " + base + "/probe?target=URL&module=NAME and " + base + "/metrics (modules: " +
                         config.module_names() + "; " + std::to_string(config.watch.size()) + " watched)");
  pollfd p{smws::shutdown::fd(), POLLIN, 0};
  while (!smws::shutdown::requested()) ::poll(&p, 1, 60000);
  smws::log::note(1, "stopping: closing watches and in-flight probes with 1001");
  exporter.stop();
  return smws::kExitOk;
}

// The help shows each flag's own type name ("SECONDS", "N"), not the
// validator's label appended to it.
// --connections/--repeat: at least 1; the top is only there so that a typo
// gets a readable range in the message instead of DBL_MAX.
constexpr size_t kMaxConnections = 1000000;

CLI::Validator unlabelled(CLI::Validator v) {
  v.description("");
  return v;
}

}  // namespace

void setup_ws_probe(CLI::App& app, ProbeOptions& o) {
  CLI::Option* url = app.add_option("URL", o.url, "ws:// or wss:// URL of the endpoint (not with --serve)");
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
  app.add_flag("--deflate", o.deflate,
               "Offer permessage-deflate and inflate compressed messages (without it, a server that forces "
               "compression is refused)");
  app.add_option("--connect-timeout", o.connect_timeout, "Seconds for DNS + TCP connect + TLS + upgrade (default 10)")
      ->check(unlabelled(smws::kSeconds))
      ->type_name("SECONDS");
  app.add_option("--connections", o.connections, "Hold N connections at once and summarise how they ended")
      ->check(unlabelled(CLI::Range(size_t{1}, kMaxConnections)))
      ->type_name("N");
  app.add_option("--repeat", o.repeat, "Connect N times in a row and summarise")
      ->check(unlabelled(CLI::Range(size_t{1}, kMaxConnections)))
      ->type_name("N");
  app.add_flag("--cat", o.cat, "Stdin lines become messages, messages become stdout lines");
  app.add_flag("--json", o.json, "Print the report as one JSON object");
  app.add_flag("--no-confirm", o.no_confirm,
               "Do not open a second connection to tell two fitting causes apart");
  app.add_option("--find-idle-timeout", o.find_idle_timeout,
                 "Measure the path's idle timeout, up to MAX seconds, with silent connections")
      ->check(unlabelled(smws::kSeconds))
      ->type_name("MAX");
  CLI::Option* serve = app.add_option("--serve", o.serve,
                                      "Run as a Prometheus exporter on HOST:PORT: /probe?target=URL&module=NAME and /metrics")
                           ->type_name("HOST:PORT");
  // URL is required unless --serve runs the exporter: checked when parsing,
  // so the usage error is CLI11's ("URL is required", exit 64).
  // (--watch or --config without --serve get run_ws_probe's own message.)
  app.callback([url, serve, &o] {
    if (url->count() == 0 && serve->count() == 0 && o.watch.empty() && o.config_file.empty())
      throw CLI::RequiredError("URL");
  });
  app.add_option("--config", o.config_file, "--serve: JSON file with modules, allow_targets and watch")
      ->type_name("FILE");
  app.add_option("--watch", o.watch, "--serve: hold a connection to URL open, export how it ends (repeatable)")
      ->allow_extra_args(false)
      ->type_name("URL");
  app.add_option("--max-concurrent", o.max_concurrent, "--serve: probes at once (default 16; over it, 503)")
      ->check(unlabelled(CLI::Range(size_t{1}, size_t{1024})))
      ->type_name("N");
  smws::add_common_flags(app, o.common);
}

int run_ws_probe(const ProbeOptions& o) {
  smws::log::init("ws-probe", o.common.verbosity());
  if (!o.serve.empty()) return serve(o);
  if (!o.config_file.empty() || !o.watch.empty()) {
    smws::log::error("--config and --watch belong to --serve HOST:PORT");
    return smws::kExitUsage;
  }
  if (o.url.empty()) {
    smws::log::error("a URL is required (ws://HOST:PORT/PATH), or --serve HOST:PORT to run the exporter");
    return smws::kExitUsage;
  }
  if (auto problem = check_options(o)) {
    smws::log::error(*problem);
    return smws::kExitUsage;
  }
  std::string error;
  auto url = smws::net::parse_ws_url(o.url, &error);
  if (!url) {
    smws::log::error(smws::terminal_safe_line(smws::redact_url_token(error)));
    return smws::kExitUsage;
  }
  const smws::net::ProbeConfig config = make_config(o, *url);
  // Every report shows the URL with its token parameter's value hidden.
  const std::string shown_url = smws::redact_url_token(o.url);
  if (o.find_idle_timeout > 0) return find_idle_timeout(o, shown_url, config);

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
    if (!o.cat) {
      if (!o.no_confirm && verbosity >= 0 && smws::plan_confirm(results.front().evidence)) {
        smws::log::note(0, "two causes fit; confirming with a second connection that pings every " +
                               smws::duration_text(smws::kConfirmPingInterval));
      }
      smws::net::confirm(config, results.front(), !o.no_confirm, make_hooks(o, false));
    }
    const ProbeResult& r = results.front();
    int exit_code = r.verdict.exit_code;
    if (r.bad_input_lines > 0 && exit_code == smws::kExitOk) exit_code = smws::kExitDataErr;
    if (o.json) {
      print(json_text(report_json(r, shown_url)));
    } else if (o.cat) {
      // stdout carries the data: the report goes to stderr, short unless -v.
      if (verbosity >= 1) {
        write_all(STDERR_FILENO, smws::terminal_safe(report_text(r, shown_url, verbosity)));
      } else if (verbosity >= 0 && r.verdict.cause != "healthy") {
        smws::log::warn(r.verdict.cause + ": " + smws::terminal_safe_line(r.verdict.text));
      }
    } else {
      print_text(report_text(r, shown_url, verbosity));
    }
    return exit_code;
  }
  const smws::net::RunInfo run{shown_url, o.connections, o.repeat};
  const auto s = smws::net::summarise(results);
  if (o.json) {
    print(json_text(smws::net::summary_json(s, results, run)));
  } else {
    print_text(smws::net::summary_text(s, results, run, verbosity));
  }
  return s.exit_code;
}

}  // namespace ws_probe
