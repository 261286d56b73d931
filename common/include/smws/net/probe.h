// SPDX-License-Identifier: Apache-2.0
// The probe engine behind ws-probe: opens one or more WebSocket connections
// (WsClient), then drives all of them from one poll loop on the calling
// thread, answering pings as the protocol requires, timestamping every frame
// in and out relative to the connection's TCP connect, and recording the
// evidence (smws/probe_verdict.h) the verdict is built from.
//
// Threads: run_probe() runs its loop on the caller's thread, which owns every
// open connection; hooks are called from that thread only. With several
// connections, handshakes run on up to 16 short-lived opener threads (so N
// connections to a distant endpoint open in parallel), each touching only the
// session it opens and handing it to the loop under a mutex; all are joined
// before run_probe() returns. One connection handshakes on the caller's
// thread before the loop starts. It
// returns when every connection has ended, the duration is over, or shutdown
// was requested (SIGINT/SIGTERM, see smws/shutdown.h), in which case open
// connections are closed with 1001.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smws/net/ws_client.h"
#include "smws/probe_idle_search.h"
#include "smws/probe_verdict.h"
#include "smws/ws_frame.h"

namespace smws::net {

// How many frames each result keeps for the report by default (the last
// ones matter most): ProbeConfig::frame_log.
inline constexpr size_t kFrameLog = 500;

struct ProbeConfig {
  WsUrl url;
  WsClientOptions client;
  std::optional<double> duration_s = 30.0;  // nullopt: until the connection or the input ends
  double ping_interval_s = 0;               // --ping: 0 sends none
  bool answer_pings = true;                 // false with --no-pong
  bool app_pong = false;                    // answer {"type":"ping"} with {"type":"pong"}
  std::vector<std::string> send;            // text messages sent right after the handshake
  bool cat = false;                         // stdin lines → messages (one connection only)
  // After the probe sends a close frame it waits this long for the server's
  // (RFC 6455 §7.1.1); a server on any sane path answers in one RTT.
  double close_wait_s = 2.0;
  // At most this many timestamp-lag samples and ping round trips are kept
  // per connection (16 and 8 bytes each); later ones are not analysed. A
  // held-open watch lowers it so that a connection open for days stays small.
  size_t max_samples = size_t{1} << 22;
  // Frames kept for the report (the last ones); a watch keeps fewer.
  size_t frame_log = kFrameLog;
};

// One frame in or out, as the report and the -vv trace show it.
struct FrameEvent {
  double at_s = 0;       // since the TCP connect started
  bool incoming = true;
  ws::Opcode opcode = ws::Opcode::kText;
  size_t size = 0;       // payload bytes
  std::string detail;    // message "type", close code, ping payload...
};

struct ProbeResult {
  size_t index = 0;                 // connection number, from 0
  HandshakeInfo handshake;
  ProbeEvidence evidence;
  Verdict verdict;
  std::vector<Intermediary> intermediaries;
  std::map<std::string, size_t> types;  // histogram of the messages' "type" field
  size_t bytes_in = 0, bytes_out = 0;   // data message payload bytes
  std::vector<double> rtt_ms;           // --ping round trips (the first max_samples)
  double last_rtt_ms = -1;              // the latest round trip, -1 before the first
  std::deque<FrameEvent> frames;        // the last ProbeConfig::frame_log frames
  size_t frames_total = 0;
  std::string tcp_error;                // errno text when the socket failed otherwise
  std::optional<ConfirmReport> confirm;  // set when the evidence fitted two causes
  size_t bad_input_lines = 0;           // --cat: stdin lines that were not UTF-8
};


struct ProbeHooks {
  // After each handshake, open or not.
  std::function<void(const ProbeResult&)> on_open;
  // Every frame as it happens (for a live trace).
  std::function<void(const ProbeResult&, const FrameEvent&)> on_frame;
  // --cat: a received data message. Return false when the output is closed
  // (EPIPE): the probe then closes the connection with 1001 and stops.
  std::function<bool(std::string_view)> on_message;
  // --cat: a stdin line that could not be sent (line number, why).
  std::function<void(size_t, const std::string&)> on_bad_input;
};

// Opens `connections` connections (in parallel), holds each for the duration
// from its own handshake, and returns one result per connection, in index
// order, with verdicts decided.
std::vector<ProbeResult> run_probe(const ProbeConfig& config, size_t connections, const ProbeHooks& hooks);

// The confirming trial (smws/probe_verdict.h, plan_confirm): when `first`'s
// evidence fits two causes, opens one more connection with `config`, held for
// the plan's time and pinging every 0.5 s, and replaces first.verdict with the
// settled one; with run_trial false (--no-confirm) only records the plan in
// first.confirm (tried = false) and keeps the verdict that names both.
// Nothing happens when the evidence names one cause. Blocks for the trial
// (at most the first connection's age plus a margin, see ConfirmPlan).
void confirm(const ProbeConfig& config, ProbeResult& first, bool run_trial, const ProbeHooks& hooks);

// --- --find-idle-timeout ---------------------------------------------------------

struct IdleTrial {
  double hold_s = 0;       // the --duration the trial was held for
  bool survived = false;
  double silence_s = 0;    // silence at its end
  uint16_t close_code = 0;
  TcpEnd tcp_end = TcpEnd::kNone;
  std::string cause;       // the trial's own verdict
};

struct IdleSearchRun {
  double max_s = 0;
  IdleSearch search{0};
  std::vector<IdleTrial> trials;
  // Set when a trial could not measure anything (no connection, a protocol
  // error, a drop after < 1 s of silence): that connection's own report is
  // the answer.
  std::optional<ProbeResult> stopped_by;
  std::string stopped_note;     // why stopped_by ended the search, for the human report
  bool server_traffic = false;  // the server sent data after its greeting during a hold
  std::vector<Intermediary> intermediaries;  // from the first trial's headers
  double connect_ms = -1, handshake_ms = -1;
  int status = 0;
  bool out_of_budget = false;  // stopped before a trial that budget_s had no room for
};

// Measures the path's idle timeout up to max_s: one silent connection per
// trial (pongs answered, nothing sent), each held for the silence
// IdleSearch asks for plus the greeting the previous trial saw.
// on_trial(n, hold_s) is called before each. Stops early (stopped_by) when a
// trial measures nothing; returns early, with what it has, on SIGINT/SIGTERM.
// budget_s (> 0): no trial starts that could end later than budget_s
// after the call (the exporter's bound on one /probe); the search then
// reports the bracket it has.
IdleSearchRun find_idle_timeout(const ProbeConfig& base, double max_s, const ProbeHooks& hooks,
                                const std::function<void(int, double)>& on_trial, double budget_s = 0);

}  // namespace smws::net
