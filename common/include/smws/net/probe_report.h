// SPDX-License-Identifier: Apache-2.0
// ws-probe's reports, built from what the probe recorded (smws/net/probe.h):
// the --json object and the human report for one connection (ending with a
// timeline strip), the summary of several (--connections, --repeat), and the
// --find-idle-timeout report. Pure functions of their arguments: no I/O, so
// the unit tests read them as specifications; the tool prints what they return.
//
// The --json fields are the SPEC's contract (Edge rules) plus the ones
// docs/troubleshooting-1006.md lists; they keep their documented order (url
// first, verdict and exit_code last).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "smws/net/probe.h"
#include "smws/probe_idle_search.h"
#include "smws/probe_verdict.h"

namespace smws::net {

using ReportJson = nlohmann::ordered_json;

// "1.50 s", "61.0 s"; "0.4 ms", "120 ms": enough digits to read, no more, in
// the report's aligned lines. Messages use smws::duration_text ("1.5 s").
std::string seconds_text(double s);
std::string millis_text(double ms);
// One frame for the -v trace: "   +1.234s <- text 57 B  tick".
std::string frame_line(const FrameEvent& f);

// --- one connection ------------------------------------------------------------

ReportJson report_json(const ProbeResult& r, const std::string& url);
// verbosity: 0 the report, 1 adds the request and response heads and the
// last 12 frames, 2 every kept frame.
std::string report_text(const ProbeResult& r, const std::string& url, int verbosity);

// The last lines of report_text for an open connection: kTimelineColumns
// columns from the end of the handshake (or the oldest kept frame) to the
// end; per column the most telling frame in it wins (close frame, message in,
// message out, ping/pong in, ping/pong out, else '.'), and the last column is
// the end: F FIN, R RST, X close frame, = still open when the probe closed it.
inline constexpr size_t kTimelineColumns = 60;
std::string timeline_strip(const ProbeResult& r);

// --- several connections -------------------------------------------------------

struct RunInfo {
  std::string url;
  size_t connections = 1;  // --connections
  size_t repeat = 1;       // --repeat
};

struct ProbeSummary {
  std::map<std::string, size_t> causes;
  std::map<std::string, size_t> close_codes;
  std::map<std::string, size_t> tcp_end;
  std::vector<double> connect_ms, handshake_ms;
  std::map<std::string, const ProbeResult*> example;  // first result per cause (points into the results)
  int exit_code = 0;  // the common one when all agree, else 1
  std::string cause;  // the most frequent unhealthy cause, or healthy
  std::string text;
  // E.g. every drop at the same age (within max(0.5 s, 10 %)): a timer on the path.
  std::vector<std::string> findings;
};
ProbeSummary summarise(const std::vector<ProbeResult>& results);
ReportJson summary_json(const ProbeSummary& s, const std::vector<ProbeResult>& results, const RunInfo& run);
std::string summary_text(const ProbeSummary& s, const std::vector<ProbeResult>& results, const RunInfo& run,
                         int verbosity);

// --- --find-idle-timeout ---------------------------------------------------------

// The verdict of a finished search (healthy: no timeout up to MAX; else
// idle_timeout with the bracket, its precision, the trial count, the default
// or intermediary it matches).
Verdict idle_search_verdict(const IdleSearchRun& run);
ReportJson idle_search_json(const IdleSearchRun& run, const std::string& url);
std::string idle_search_text(const IdleSearchRun& run, const std::string& url);

}  // namespace smws::net
