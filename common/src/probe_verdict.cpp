// SPDX-License-Identifier: Apache-2.0
#include "smws/probe_verdict.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "smws/ascii.h"
#include "smws/exit_code.h"

namespace smws {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// "1.5 s", "61 s", "0.31 s": enough digits to read, no more.
std::string secs(double s) {
  char buf[32];
  if (s >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string tcp_end_words(TcpEnd end) {
  switch (end) {
    case TcpEnd::kFin: return "TCP FIN: the peer closed the socket";
    case TcpEnd::kRst: return "TCP RST: the peer reset the connection";
    case TcpEnd::kNone: break;
  }
  return "the TCP connection ended";
}

std::string refused_text(const ProbeEvidence& e) {
  std::string text = "The server refused the WebSocket handshake";
  if (e.status != 0) text += " with HTTP " + std::to_string(e.status);
  if (!e.error.empty()) text += ": " + e.error;
  text += ". ";
  switch (e.status) {
    case 0: text += "The answer was not a usable HTTP response: is this a WebSocket port (TLS on a plain port, or plain on a TLS port)?"; break;
    case 101: text += "It agreed to switch protocols but the response breaks RFC 6455, so no browser would accept it; a proxy that rewrites the response, or a hand-written server, is the likely cause."; break;
    case 200: case 204: case 301: case 302: case 307: case 308:
      text += "The path answers plain HTTP instead of upgrading: a wrong path, or a proxy that drops the Upgrade and Connection headers (nginx needs proxy_http_version 1.1 and proxy_set_header Upgrade $http_upgrade / Connection \"upgrade\").";
      break;
    case 400: text += "The server found the upgrade request malformed, or a proxy stripped headers it needs (Upgrade, Connection, Sec-WebSocket-Key)."; break;
    case 401: case 403: text += "Authentication or Origin check: pass a token (-H 'Authorization: Bearer …') or the expected --origin."; break;
    case 404: text += "No WebSocket endpoint at this path: check the URL's path."; break;
    case 426: text += "The server wants a different protocol version (it asks for an upgrade the probe did not offer)."; break;
    case 429: text += "Rate limited: too many connections from this client."; break;
    case 500: text += "The server's handler failed while upgrading: look at its logs."; break;
    case 502: case 504: text += "A proxy could not reach the application behind it (backend down, wrong upstream port, or upstream timeout)."; break;
    case 503: text += "The service is unavailable or at its connection limit (ws-relay answers 503 above --max-clients)."; break;
    default: break;
  }
  return text;
}

// SPEC, Hostile input at the edges: a 101 naming an extension the probe did
// not offer fails the connection (RFC 6455 §9.1, RFC 7692 §5).
std::string unoffered_extension_text(const ProbeEvidence& e) {
  std::string text = "The server answered 101 with 'Sec-WebSocket-Extensions: " + e.extensions + "'";
  if (e.deflate_offered) {
    text += ", which does not accept the probe's permessage-deflate offer as RFC 7692 allows";
    if (!e.error.empty()) text += " (" + e.error + ")";
    text += ". The probe failed the connection, as a browser does.";
    return text;
  }
  text += " although the probe offered no extension. RFC 7692 §5 says a client fails such a connection, and "
          "browsers do: the page sees 1006 right after connecting. The server or a proxy forces compression "
          "(permessage-deflate) whatever the client asked: make it honour the client's offer.";
  return text;
}

bool reason_mentions_keepalive(std::string_view reason) {
  std::string r = ascii_lower(reason);
  return contains(r, "ping") || contains(r, "pong") || contains(r, "keepalive") ||
         contains(r, "keep-alive") || contains(r, "heartbeat");
}

const char* const kConfirmPingIntervalText = "0.5";  // kConfirmPingInterval, as typed on a command line

}  // namespace

namespace {

std::vector<Intermediary> proxies(const ProbeEvidence& e) {
  std::vector<Intermediary> out;
  for (const auto& i : e.intermediaries) {
    if (is_in_between(i)) out.push_back(i);
  }
  return out;
}

// "nginx (Server: nginx/1.22.1)" or "nginx (…) and Cloudflare (…)".
std::string in_between_list(const ProbeEvidence& e) {
  std::string out;
  const auto list = proxies(e);
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out += i + 1 == list.size() ? " and " : ", ";
    out += list[i].name + " (" + list[i].evidence + ")";
  }
  return out;
}

// ", most likely nginx's proxy_read_timeout (…) set to about 4 s" or "".
std::string idle_setting_words(const ProbeEvidence& e) {
  for (const auto& i : proxies(e)) {
    std::string setting = idle_setting_of(i);
    if (!setting.empty()) return ": most likely " + setting;
  }
  return "";
}

// " (in between: nginx (Server: nginx))" or "".
std::string in_between_words(const ProbeEvidence& e) {
  const std::string list = in_between_list(e);
  return list.empty() ? std::string() : " (in between: " + list + ")";
}

std::string waits_advice() {
  return "The server most likely blocks waiting for client input: a handler that awaits a receive (or an "
         "auth/subscribe message) and gives up when none comes, or returns after its first send. Fix: run the "
         "send loop independently of receiving; if the client must speak first, say so with a close frame "
         "(1008 and a reason) instead of dropping.";
}

std::string waits_text(const ProbeEvidence& e, const std::string& how) {
  return "The server " + how + " " + secs(e.age_s()) + " after the handshake, having sent " +
         (e.messages_in == 0 ? std::string("nothing")
                             : plural(e.messages_in, "message", "messages") + " only in the first " +
                                   secs(kGreetingWindow)) +
         ", while the probe sent nothing. " + waits_advice();
}

// What the silence matches and what to change: a known default, else the
// intermediary named in the headers and its setting, else where to look.
std::string idle_advice_for(const std::vector<Intermediary>& intermediaries, size_t pings_received,
                            double silence);

std::string idle_advice(const ProbeEvidence& e, double silence) {
  return idle_advice_for(e.intermediaries, e.pings_received, silence);
}

}  // namespace

std::string idle_timeout_advice(const std::vector<Intermediary>& intermediaries, double silence_s) {
  return idle_advice_for(intermediaries, 0, silence_s);
}

namespace {

std::string idle_advice_for(const std::vector<Intermediary>& intermediaries, size_t pings_received,
                            double silence) {
  ProbeEvidence e;
  e.intermediaries = intermediaries;
  std::string text;
  const auto matches = match_idle_default(silence);
  const auto list = proxies(e);
  if (!matches.empty()) {
    text = "That matches " + describe_idle_matches(matches) + ". Fix: " + std::string(matches.front().fix) + ".";
  } else if (!list.empty()) {
    text = "It matches no well-known default, and " + in_between_list(e) + " stands in between";
    const std::string setting = idle_setting_words(e);
    if (!setting.empty()) {
      text += setting + ", set to about " + secs(silence) + ". Raise it above the longest silence a client may "
              "see (e.g. 3600 s for WebSockets), or ping more often than every " + secs(silence) + ".";
    } else {
      text += ": look for a timeout of about " + secs(silence) + " in its configuration.";
    }
  } else {
    text = "It matches no well-known default (nginx/AWS ALB 60 s, Cloudflare 100 s, Azure LB 240 s, "
           "AWS NLB 350 s): look for a timeout of about " + secs(silence) +
           " in the server's or a proxy's configuration.";
  }
  if (pings_received == 0) {
    text += " The server sent no ping during the silence: a ping every ~20 s (shorter than any idle timeout "
            "on the path) keeps the connection alive.";
  }
  return text;
}

}  // namespace

const char* tcp_end_name(TcpEnd end) {
  switch (end) {
    case TcpEnd::kFin: return "fin";
    case TcpEnd::kRst: return "rst";
    case TcpEnd::kNone: break;
  }
  return "";
}

const char* close_by_name(CloseBy by) {
  switch (by) {
    case CloseBy::kServer: return "server";
    case CloseBy::kClient: return "client";
    case CloseBy::kNone: break;
  }
  return "none";
}

double ProbeEvidence::silence_before_end_s() const {
  double last = handshake_done_s;
  if (last_frame_in_s) last = std::max(last, *last_frame_in_s);
  if (last_frame_out_s) last = std::max(last, *last_frame_out_s);
  return std::max(0.0, end_s - last);
}

LagStats analyze_lags(const std::vector<StampedArrival>& arrivals) {
  LagStats stats;
  stats.stamped = arrivals.size();
  if (arrivals.empty()) return stats;
  stats.min_lag_s = arrivals.front().lag_s;
  for (const auto& a : arrivals) stats.min_lag_s = std::min(stats.min_lag_s, a.lag_s);
  for (const auto& a : arrivals) {
    double excess = a.lag_s - stats.min_lag_s;
    if (excess > a.at_s) {
      ++stats.ignored;
      continue;
    }
    if (excess > stats.worst_excess_s) {
      stats.worst_excess_s = excess;
      stats.worst_at_s = a.at_s;
    }
    if (excess > kStallLag) ++stats.late;
  }
  return stats;
}


std::string explain_close_code(uint16_t code) {
  switch (code) {
    case 1000: return "normal closure: the server ended the session on purpose (end of stream, logout, replaced session)";
    case 1001: return "going away: the server (or a proxy) is shutting down or restarting, e.g. a deploy or a config reload; clients should reconnect with backoff";
    case 1002: return "protocol error: the server says the client broke RFC 6455 (or a proxy mangled the frames)";
    case 1003: return "unsupported data: the server does not accept this kind of message (e.g. binary on a text-only endpoint)";
    case 1005: return "no status code: a close frame without a code";
    case 1006: return "abnormal closure: the connection dropped without a close frame";
    case 1007: return "invalid payload: a message did not match its type (e.g. text that is not UTF-8, or JSON the server rejects)";
    case 1008: return "policy violation: a generic refusal (authentication, origin, token expiry, or a keepalive the client missed: ws-relay closes unanswered pings with 1008 \"ping timeout\")";
    case 1009: return "message too big: a message the client sent exceeded the server's limit";
    case 1010: return "mandatory extension: an extension the client required was not negotiated";
    case 1011: return "internal error: the server hit an unexpected condition (an exception in its handler); its logs at that time say what";
    case 1012: return "service restart: the server is restarting; reconnect after a short delay";
    case 1013: return "try again later: the server is overloaded or shed this client (ws-relay closes a client whose queue overflowed, a slow consumer, with 1013)";
    case 1014: return "bad gateway: a gateway or proxy got an invalid response from the server behind it";
    case 1015: return "TLS handshake failure (never sent on the wire)";
    default: break;
  }
  if (code >= 3000 && code <= 3999) return "a code registered by a library or framework (3000 is often 'unauthorized', 3003 'forbidden'): see the reason";
  if (code >= 4000 && code <= 4999) return "an application-defined code: the server's own protocol; its reason and docs say what it means";
  return "an unassigned close code";
}

Verdict decide(const ProbeEvidence& e) {
  Verdict v;

  // Before the connection was open: the three handshake outcomes.
  switch (e.ending) {
    case Ending::kUnreachable:
      v.cause = "unreachable";
      v.exit_code = kExitUnavailable;
      v.text = "Cannot reach the endpoint: " + (e.error.empty() ? std::string("connect failed") : e.error) + ". ";
      if (contains(ascii_lower(e.error), "certificate")) {
        v.text += "The server's TLS certificate was not accepted: expired, self-signed, missing its chain, or "
                  "issued for another host name. Fix the certificate; --insecure probes the rest anyway.";
      } else if (contains(e.error, "TLS")) {
        v.text += "TCP connected but TLS failed: is this port serving TLS (wss://) at all, and with a protocol "
                  "version and ciphers a current OpenSSL accepts?";
      } else {
        v.text += "Check the host, the port, DNS and any firewall; is the server running and listening on that address?";
      }
      return v;
    case Ending::kHandshakeTimeout:
      v.cause = "unreachable";
      v.exit_code = kExitTempFail;
      v.text = "TCP connected, but the WebSocket handshake did not complete in time" +
               (e.error.empty() ? std::string() : ": " + e.error) +
               ". The server accepted the connection and never answered the upgrade: an overloaded or blocked "
               "server, a TLS/plain mismatch (ws:// to a TLS port), or a proxy waiting for its upstream.";
      return v;
    case Ending::kRefused:
      v.cause = "handshake_refused";
      v.exit_code = kExitNegative;
      v.text = e.status == 101 && !e.extensions.empty() ? unoffered_extension_text(e) : refused_text(e);
      if (!proxies(e).empty()) {
        // A proxy's own error page (nginx's 502) is its answer, not the application's.
        v.text += " The answer came through " + in_between_list(e) +
                  (e.status == 502 || e.status == 504 ? ": it is that proxy reporting its upstream (check the "
                                                        "upstream address and that the application is up)."
                                                      : ".");
      }
      return v;
    default:
      break;
  }

  // Secondary observations, whatever the main cause.
  if (!e.extensions.empty()) {
    // Open with an extension: only when the probe offered it (--deflate);
    // an unoffered one is refused in the handshake (unoffered_extension_text).
    v.findings.push_back("The server accepted the probe's permessage-deflate offer (Sec-WebSocket-Extensions: " +
                         e.extensions + ")." +
                         std::string(e.inflated ? " The probe inflated its compressed frames, so the counts, types "
                                                  "and timestamps above are the real messages."
                                                : ""));
  }
  if (e.lags.stalled() && e.ending != Ending::kStillOpen && e.ending != Ending::kInputEnded &&
      e.ending != Ending::kInterrupted) {
    v.findings.push_back("Also, " + plural(e.lags.late, "message", "messages") + " arrived up to " +
                         secs(e.lags.worst_excess_s) + " later than their timestamps suggest: the server's loop stalled.");
  }
  if (e.pings_sent > 0 && e.pongs_received == 0) {
    v.findings.push_back("The server answered none of the " + plural(e.pings_sent, "ping", "pings") +
                         " the probe sent (RFC 6455 §5.5.2 requires a pong).");
  }
  if (!e.server_answered_close &&
      (e.ending == Ending::kStillOpen || e.ending == Ending::kInputEnded || e.ending == Ending::kInterrupted)) {
    v.findings.push_back("The server did not answer the probe's close frame with its own (RFC 6455 §5.5.1).");
  }

  const double silence = e.silence_before_end_s();
  const std::string when = secs(e.end_s) + " after connect";

  if (e.ending == Ending::kProtocolError) {
    v.cause = "server_error";
    v.exit_code = kExitNegative;
    v.text = "The server broke the WebSocket protocol: " + e.protocol_error + " (" + when +
             "); the probe closed the connection with " + std::to_string(e.close_code) +
             ". A browser would drop it too. Fix the server's framing (or the proxy that alters it).";
    return v;
  }

  if (e.ending == Ending::kStillOpen || e.ending == Ending::kInputEnded || e.ending == Ending::kInterrupted ||
      (e.ending == Ending::kServerClose && e.cat_mode && e.input_ended &&
       (e.close_code == 1000 || e.close_code == 1001))) {
    if (e.lags.stalled()) {
      v.cause = "stalled_server";
      v.exit_code = kExitNegative;
      v.text = plural(e.lags.late, "message", "messages") + " arrived more than " + secs(kStallLag) +
               " later than their timestamps, relative to the smallest lag on this connection (worst " +
               secs(e.lags.worst_excess_s) + " late, at +" + secs(e.lags.worst_at_s) + "; longest gap between frames " +
               secs(e.longest_gap_s) + " ending at +" + secs(e.longest_gap_at_s) +
               "). The server stamped them on time but sent them in a burst: its event loop or send path was "
               "blocked (a synchronous call, a slow client write, GC, or CPU starvation). Profile the server "
               "around those times; never block its loop on I/O.";
      return v;
    }
    v.cause = "healthy";
    v.exit_code = kExitOk;
    if (e.ending == Ending::kStillOpen) {
      v.text = "The connection stayed open for the whole probe (" + secs(e.end_s - e.handshake_done_s) + ")";
    } else if (e.ending == Ending::kInterrupted) {
      v.text = "The connection stayed open until the probe was interrupted (" + secs(e.end_s - e.handshake_done_s) + ")";
    } else {
      v.text = "Input ended and the connection closed cleanly";
    }
    v.text += "; " + plural(e.messages_in, "message", "messages") + " received";
    if (e.pings_received > 0) v.text += ", " + plural(e.pings_received, "ping", "pings") + " from the server";
    v.text += ".";
    if (!e.answers_pings && e.pings_received > 0) {
      v.findings.push_back("The server sent " + plural(e.pings_received, "ping", "pings") +
                           " that the probe did not answer (--no-pong) and kept the connection open: it does "
                           "not enforce its keepalive (dead clients linger until TCP notices).");
    }
    if (e.messages_in == 0 && e.pings_received == 0 && e.end_s - e.handshake_done_s >= 10) {
      v.findings.push_back("The server sent nothing, not even a keepalive ping: behind a proxy with an idle "
                           "timeout (nginx and AWS ALB: 60 s) a listen-only client would be dropped. Have the "
                           "server ping every ~20 s.");
    }
    return v;
  }

  // The server or the path ended it: close frame (kServerClose) or none (kDropped).
  v.exit_code = kExitNegative;
  const bool unanswered_ping = e.first_unanswered_ping_s && *e.first_unanswered_ping_s <= e.end_s;
  const bool unanswered_app_ping =
      !e.app_pong && e.first_unanswered_app_ping_s && *e.first_unanswered_app_ping_s <= e.end_s;
  const bool keepalive_reason = e.ending == Ending::kServerClose && reason_mentions_keepalive(e.close_reason);
  const std::string how = e.ending == Ending::kServerClose
                              ? "closed with " + std::to_string(e.close_code) +
                                    (e.close_reason.empty() ? std::string() : " \"" + e.close_reason + "\"")
                              : "dropped without a close frame (1006, " + tcp_end_words(e.tcp_end) + ")";

  if (unanswered_ping || unanswered_app_ping || keepalive_reason) {
    v.cause = "ping_timeout";
    if (unanswered_ping) {
      v.text = "The server sent " + plural(e.pings_received, "ping", "pings") + ", the probe answered " +
               std::to_string(e.pings_answered) + " (--no-pong), and the server " + how + " " +
               secs(e.end_s - *e.first_unanswered_ping_s) + " after the first unanswered ping. ";
    } else if (unanswered_app_ping) {
      v.text = "The server sent " + plural(e.app_pings_received, "application ping", "application pings") +
               " ({\"type\":\"ping\"}), the probe did not answer them (try --app-pong), and the server " + how +
               " " + secs(e.end_s - *e.first_unanswered_app_ping_s) + " after the first. ";
    } else {
      v.text = "The server " + how + " and names a keepalive as the reason, although the probe answered " +
               std::to_string(e.pings_answered) + " of " + std::to_string(e.pings_received) + " pings. ";
    }
    v.text += "The server's keepalive works as designed: clients that do not answer pings are dropped. "
              "Make sure real clients answer (browsers answer protocol pings by themselves; an application-level "
              "ping needs an application-level pong) and that the ping timeout is longer than the worst RTT.";
    return v;
  }

  if (e.ending == Ending::kServerClose) {
    v.cause = (e.close_code == 1011 || e.close_code == 1014) ? "server_error" : "server_closed";
    v.text = "The server " + how + " " + when + ", " + secs(silence) + " after the last frame: " +
             explain_close_code(e.close_code) + ".";
    if (e.close_code == 1011) v.text += " Fix the server's exception; the reconnecting client only repeats it.";
    if (e.close_code == 1013) v.text += " Make the client read faster, or raise the server's queue/limit.";
    return v;
  }

  // kDropped: no close frame at all. Ordered as docs/troubleshooting-1006.md lists them.
  if (e.tcp_end == TcpEnd::kRst && silence < kMinIdleSilence) {
    // A reset is a reset (SPEC, Edge rules): a server that gives up on a silent
    // client closes its socket (FIN); an RST is a crash, an abort, or something
    // in between dropping the flow, whatever came before it.
    v.cause = "connection_reset";
    v.text = "The connection was reset (TCP RST, no close frame) " + when + ", " + secs(silence) +
             " after the last frame. The server process crashed or was killed, closed its socket with "
             "unread data, or a firewall/NAT/proxy dropped the flow" +
             in_between_words(e) + ". Check the server's logs and restarts at that time.";
    return v;
  }
  const bool greeting_only =
      !e.last_message_s || *e.last_message_s - e.handshake_done_s <= kGreetingWindow;
  const bool probe_silent = e.messages_out == 0;
  if (greeting_only && probe_silent && silence < kMinIdleSilence) {
    v.cause = "server_waits_for_client";
    v.text = waits_text(e, how) + " Confirm with --send '<first message>'.";
    return v;
  }
  if (auto plan = plan_confirm(e)) {
    // Two causes fit (see plan_confirm); without a trial, name both.
    const bool proxy = !proxies(e).empty();
    v.candidates = proxy ? std::vector<std::string>{"idle_timeout", "server_waits_for_client"}
                         : std::vector<std::string>{"server_waits_for_client", "idle_timeout"};
    v.cause = v.candidates.front();
    v.text = "Two causes fit this connection. It was " + how + " " + secs(e.age_s()) +
             " after the handshake, after " + secs(silence) + " of silence, having received " +
             (e.messages_in == 0 ? std::string("nothing")
                                 : plural(e.messages_in, "message", "messages") + " only in the first " +
                                       secs(kGreetingWindow)) +
             " while the probe sent nothing. Either the server waits for client input and gives up, or an "
             "idle timeout of about " + secs(silence) + " on the path dropped it" +
             (proxy ? " (likelier: " + in_between_list(e) + " stands in between" +
                          idle_setting_words(e) + ")"
                    : std::string()) +
             ". The silence matches no well-known default. Tell them apart with a connection kept busy by "
             "protocol pings: `" + plan->command + "`: if it stays open, it is an idle timeout; if it drops "
             "at the same age, the server waits for the client. (ws-probe runs this trial itself unless "
             "--no-confirm is given.)";
    return v;
  }
  if (silence >= kMinIdleSilence) {
    v.cause = "idle_timeout";
    v.text = "The connection was " + how + " after " + secs(silence) + " with no frame in either direction (" +
             when + "): an idle timeout on the path. " + idle_advice(e, silence);
    return v;
  }
  v.cause = "server_closed";
  v.text = "The server (or a proxy) closed the TCP connection without a WebSocket close frame (1006, FIN) " + when +
           ", " + secs(silence) + " after the last frame. It tore the socket down instead of closing the "
           "WebSocket: a handler that returned or threw, or a proxy reload. Close with a code and reason instead.";
  return v;
}

std::optional<ConfirmPlan> plan_confirm(const ProbeEvidence& e) {
  if (e.ending != Ending::kDropped || e.tcp_end == TcpEnd::kRst) return std::nullopt;
  if (e.first_unanswered_ping_s || (!e.app_pong && e.first_unanswered_app_ping_s)) return std::nullopt;
  const double silence = e.silence_before_end_s();
  const bool greeting_only =
      !e.last_message_s || *e.last_message_s - e.handshake_done_s <= kGreetingWindow;
  if (!greeting_only || e.messages_out > 0 || silence < kMinIdleSilence) return std::nullopt;
  if (!match_idle_default(silence).empty()) return std::nullopt;
  ConfirmPlan plan;
  plan.candidates = {"server_waits_for_client", "idle_timeout"};
  plan.first_age_s = e.age_s();
  plan.first_silence_s = silence;
  plan.hold_s = plan.first_age_s + std::max(kConfirmMarginMin, kConfirmMarginFraction * plan.first_age_s);
  plan.ping_every_s = kConfirmPingInterval;
  char hold[32];
  std::snprintf(hold, sizeof hold, "%.1f", std::ceil(plan.hold_s * 10) / 10);
  plan.command = "ws-probe --ping " + std::string(kConfirmPingIntervalText) + " --duration " + hold + " " +
                 (e.url.empty() ? std::string("URL") : e.url);
  return plan;
}

Verdict settle(const ProbeEvidence& first, const ConfirmPlan& plan, const ProbeEvidence& trial,
               ConfirmReport* report) {
  report->plan = plan;
  report->tried = true;
  report->trial_pings = trial.pings_sent;
  report->trial_pongs = trial.pongs_received;
  const Verdict trial_verdict = decide(trial);
  report->trial_cause = trial_verdict.cause;
  const bool opened = trial.ending != Ending::kUnreachable && trial.ending != Ending::kHandshakeTimeout &&
                      trial.ending != Ending::kRefused;
  report->trial_age_s = opened ? trial.age_s() : 0;
  if (!opened) {
    report->trial_end = "no connection: " + trial_verdict.cause;
  } else if (trial.ending == Ending::kStillOpen || trial.ending == Ending::kInterrupted) {
    report->trial_end = "open until the probe closed it";
  } else if (trial.ending == Ending::kDropped) {
    report->trial_end = std::string("1006, TCP ") + (trial.tcp_end == TcpEnd::kRst ? "RST" : "FIN");
  } else {
    report->trial_end = std::to_string(trial.close_code) + " from the server";
  }

  Verdict v = decide(first);  // the unconfirmed verdict: findings, and the fallback text
  v.candidates.clear();
  const double same_age = std::max(kSameAgeMin, kSameAgeFraction * plan.first_age_s);
  const std::string trial_words = "A second connection kept busy with protocol pings every " +
                                  secs(plan.ping_every_s) + " (" + std::to_string(trial.pings_sent) + " sent, " +
                                  std::to_string(trial.pongs_received) + " answered) ";
  const std::string first_words = "The first connection was dropped without a close frame (1006) " +
                                  secs(plan.first_age_s) + " after the handshake, after " +
                                  secs(plan.first_silence_s) + " of silence while the probe sent nothing. ";
  if (!opened) {
    report->outcome = "no_connection";
  } else if (trial.ending == Ending::kInterrupted && trial.age_s() < plan.first_age_s + same_age) {
    report->outcome = "interrupted";
  } else if (trial.ending == Ending::kStillOpen || trial.ending == Ending::kInterrupted ||
             trial.age_s() > plan.first_age_s + same_age) {
    report->outcome = "outlived";
    report->settled = "idle_timeout";
    v.cause = "idle_timeout";
    v.text = first_words + trial_words + "lived " + secs(trial.age_s()) +
             (trial.ending == Ending::kStillOpen ? " until the probe closed it" : "") +
             ": traffic keeps the path open, so an idle timeout of at most " + secs(plan.first_silence_s) +
             " dropped the first, not the application. " + idle_advice(first, plan.first_silence_s);
    return v;
  } else if (trial.ending == Ending::kDropped && std::fabs(trial.age_s() - plan.first_age_s) <= same_age) {
    report->outcome = "same_age";
    report->settled = "server_waits_for_client";
    v.cause = "server_waits_for_client";
    v.text = first_words + trial_words + "was dropped at the same age (" + secs(trial.age_s()) +
             "): pings are traffic to any proxy, so the path is not idling; the application gives up on a "
             "client that sends no message. " + waits_advice();
    return v;
  } else {
    report->outcome = "earlier";
  }
  // Inconclusive: keep both candidates.
  v.candidates = plan.candidates;
  if (!proxies(first).empty()) std::swap(v.candidates[0], v.candidates[1]);
  v.cause = v.candidates.front();
  v.text = decide(first).text + " The trial did not settle it: " + trial_words +
           (opened ? "ended after " + secs(trial.age_s()) + " (" + report->trial_end + ", " + trial_verdict.cause + ")"
                   : "could not connect (" + trial_verdict.cause + ")") +
           ".";
  return v;
}

}  // namespace smws
