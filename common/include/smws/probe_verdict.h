// SPDX-License-Identifier: Apache-2.0
// ws-probe's judgement, kept apart from sockets so every rule can be unit
// tested: what a probe saw on one connection (ProbeEvidence) goes in, a
// verdict with a stable cause identifier and plain-words text comes out.
// Also pure: the "stalled server" analysis of timestamped messages. What
// the verdict knows of proxies, CDNs and their idle timeouts is a table of
// its own, smws/probe_knowledge.h.
//
// Every rule and threshold here is written down in docs/troubleshooting-1006.md;
// change both together. The causes are the SPEC's (Edge rules): healthy,
// server_waits_for_client, idle_timeout, ping_timeout, handshake_refused,
// server_closed, server_error, connection_reset, stalled_server, unreachable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "smws/probe_knowledge.h"

namespace smws {

// Thresholds (seconds), see docs/troubleshooting-1006.md.
// "Right after the handshake": data that arrives within this window is the
// server's greeting (snapshot, hello); a server that stays silent after it
// and drops a silent client is waiting for the client to speak.
inline constexpr double kGreetingWindow = 1.0;
// A drop counts as an idle timeout only after at least this much silence in
// both directions: shorter gaps are ordinary traffic spacing.
inline constexpr double kMinIdleSilence = 1.0;
// A timestamped message later than the connection's smallest lag by more
// than this means the sender's loop was blocked (clock offset cancels out).
inline constexpr double kStallLag = 1.0;

enum class TcpEnd { kNone, kFin, kRst };
const char* tcp_end_name(TcpEnd end);  // "fin", "rst", "" for kNone

// The side that ended the connection first (SPEC, Edge rules): kServer when
// the server's close frame, FIN or RST came before anything the probe did to
// end it, kClient when the probe closed first, kNone when no WebSocket
// connection was made.
enum class CloseBy { kNone, kServer, kClient };
const char* close_by_name(CloseBy by);  // "none", "server", "client"

// How the probe's part of the story ended.
enum class Ending {
  kUnreachable,       // DNS or TCP connect failed (also TLS setup failed)
  kHandshakeTimeout,  // TCP connected, no complete handshake within --connect-timeout
  kRefused,           // the server answered, but not with a valid 101
  kStillOpen,         // open for the whole duration; the probe closed it (1000)
  kInputEnded,        // --cat: stdin ended, the probe closed it (1000)
  kInterrupted,       // SIGINT/SIGTERM: the probe closed it (1001)
  kServerClose,       // the server sent a close frame first
  kDropped,           // TCP ended (FIN or RST) without a close frame: 1006
  kProtocolError,     // the server broke RFC 6455; the probe closed with 1002/1007/1009
};

// Lag analysis of messages that carry a "timestamp" (seconds since the epoch).
struct StampedArrival {
  double at_s = 0;   // arrival, seconds since connect
  double lag_s = 0;  // local wall clock at arrival minus the message's timestamp
};

// A message whose excess lag is larger than its arrival time since connect
// was stamped before the connection existed: replayed history, or a producer
// that forwards old events. It says nothing about this connection's sender
// loop and is left out (counted in `ignored`).
struct LagStats {
  size_t stamped = 0;        // messages with a usable timestamp, ignored ones included
  size_t ignored = 0;        // stamped before the connection started (see above)
  double min_lag_s = 0;      // smallest lag: the clock offset plus the best path delay
  double worst_excess_s = 0; // largest lag minus min_lag_s
  double worst_at_s = 0;     // when the worst one arrived (since connect)
  size_t late = 0;           // messages with excess > kStallLag
  bool stalled() const { return late > 0; }
};
LagStats analyze_lags(const std::vector<StampedArrival>& arrivals);

// Everything the verdict rests on. Times are seconds since the TCP connect
// started; optional times are unset when the thing never happened.
struct ProbeEvidence {
  Ending ending = Ending::kStillOpen;
  std::string error;          // unreachable / timeout / refusal detail
  int status = 0;             // HTTP status of the handshake response, 0 if none
  double handshake_done_s = 0;

  bool cat_mode = false;
  bool input_ended = false;   // --cat: stdin had ended when the connection ended
  bool answers_pings = true;  // false with --no-pong
  bool app_pong = false;      // --app-pong

  size_t messages_in = 0;     // data messages received
  size_t messages_out = 0;    // data messages the probe sent (--send, --cat, app pongs)
  std::optional<double> first_message_s, last_message_s;  // incoming data
  std::optional<double> last_frame_in_s, last_frame_out_s;  // any opcode
  size_t pings_received = 0, pings_answered = 0;
  std::optional<double> first_unanswered_ping_s;
  size_t app_pings_received = 0, app_pongs_sent = 0;  // {"type":"ping"} messages
  std::optional<double> first_unanswered_app_ping_s;
  size_t pings_sent = 0, pongs_received = 0;          // --ping

  double longest_gap_s = 0;   // longest silence between incoming frames
  double longest_gap_at_s = 0;
  LagStats lags;

  // The end (unset fields for kUnreachable/kHandshakeTimeout/kRefused).
  double end_s = 0;
  CloseBy close_by = CloseBy::kNone;
  uint16_t close_code = 0;    // 1006 when no close frame
  std::string close_reason;
  TcpEnd tcp_end = TcpEnd::kNone;
  bool server_answered_close = true;  // when the probe closed first
  std::string protocol_error;          // kProtocolError: what the server did wrong

  std::string extensions;     // Sec-WebSocket-Extensions of the server's 101
  bool deflate_offered = false;  // --deflate: the probe offered permessage-deflate
  bool inflated = false;      // the probe decompressed permessage-deflate frames
  double duration_s = 0;      // the planned --duration (0: unlimited)
  std::vector<Intermediary> intermediaries;  // fingerprint() of the response headers
  std::string url;            // the URL probed, for commands the verdict suggests

  // Seconds from the end of the handshake to the end.
  double age_s() const { return end_s - handshake_done_s; }

  // Seconds without any frame in either direction before the end.
  double silence_before_end_s() const;
};

// What an idle timeout of silence_s seconds likely is and what to change: the
// known default it matches, else the intermediary in between and its
// setting, else where to look. Ends with the keepalive advice.
std::string idle_timeout_advice(const std::vector<Intermediary>& intermediaries, double silence_s);

// What a close code means and what usually sends it, for reports.
std::string explain_close_code(uint16_t code);

struct Verdict {
  std::string cause;   // stable identifier, see the list above
  std::string text;    // plain words: what happened, the likely cause, the fix
  std::vector<std::string> findings;  // secondary observations
  int exit_code = 0;   // smws::ExitCode value
  // Non-empty when the evidence fits two causes and no trial settled it
  // (--no-confirm, or several connections): both, the likelier first (it is
  // `cause`); the text names both and the command that tells them apart.
  std::vector<std::string> candidates;
};

Verdict decide(const ProbeEvidence& evidence);

// --- the confirming trial (SPEC: "A second opinion by experiment") ----------
//
// A drop without a close frame, after the greeting only, while the probe was
// silent, after >= 1 s of silence that matches no known default fits two
// causes: a server waiting for client input, or an idle timeout on the path.
// A second connection kept busy with protocol pings tells them apart: a proxy
// counts pings (and the server's pongs) as traffic, an application never sees
// them as a message.

// Pings every half second: well inside the shortest idle timeout the probe
// can tell from a waiting server (1 s of silence, kMinIdleSilence).
inline constexpr double kConfirmPingInterval = 0.5;
// The trial is held this much longer than the first connection lived
// (at least 1 s, or a quarter of its age), so "outlived" is never a matter of
// scheduling noise.
inline constexpr double kConfirmMarginMin = 1.0;
inline constexpr double kConfirmMarginFraction = 0.25;
// A trial that drops within this of the first connection's age dropped "at
// the same age": max(0.5 s, 10 %).
inline constexpr double kSameAgeMin = 0.5;
inline constexpr double kSameAgeFraction = 0.10;

struct ConfirmPlan {
  std::vector<std::string> candidates;  // {"server_waits_for_client", "idle_timeout"}
  double first_age_s = 0;    // the first connection's age at its drop (since its handshake)
  double first_silence_s = 0;
  double hold_s = 0;         // how long to hold the trial after its handshake
  double ping_every_s = kConfirmPingInterval;
  std::string command;       // the same trial by hand, for --no-confirm
};
// The trial that separates the candidates of this evidence, or nullopt when
// the evidence names one cause.
std::optional<ConfirmPlan> plan_confirm(const ProbeEvidence& first);

// What the trial showed, for the report (`confirm` in --json).
struct ConfirmReport {
  ConfirmPlan plan;
  bool tried = false;        // false: --no-confirm, or interrupted before it ran
  std::string outcome;       // "outlived", "same_age", "earlier", "no_connection"; "" when not tried
  double trial_age_s = 0;    // how long the trial lived after its handshake
  std::string trial_end;     // "open at the end of the hold", "1006 FIN", "1000 from the server", ...
  std::string trial_cause;   // the trial connection's own verdict
  size_t trial_pings = 0, trial_pongs = 0;
  std::string settled;       // the cause it settled on, "" when inconclusive
};

// The verdict after the trial: `first` is the ambiguous connection, `trial`
// the one kept busy with pings. Fills *report (tried, outcome, settled).
Verdict settle(const ProbeEvidence& first, const ConfirmPlan& plan, const ProbeEvidence& trial,
               ConfirmReport* report);

}  // namespace smws
