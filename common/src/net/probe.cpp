// SPDX-License-Identifier: Apache-2.0
#include "smws/net/probe.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/shutdown.h"
#include "smws/terminal_text.h"
#include "smws/utf8.h"

namespace smws::net {
namespace {

using Clock = WsClient::Clock;

// --cat stops reading stdin while this much is queued for the server, so a
// fast producer cannot make the probe buffer without bound.
constexpr size_t kMaxQueuedOut = 1 << 20;
// A stdin line longer than this (no newline yet) is refused rather than buffered.
constexpr size_t kMaxInputLine = 16 << 20;
// Timestamps are seconds since the epoch; values this large are milliseconds,
// values this small are not epoch times at all (a counter, a duration).
constexpr double kMillisecondStamp = 1e11;
constexpr double kMinEpochStamp = 1e9;
// Lag samples kept per connection (16 bytes each, 64 MiB at most): about 12
// hours at 100 stamped messages per second; later ones are not analysed.
constexpr size_t kMaxStamps = size_t{1} << 22;
// Reads per readable connection per loop turn: keeps one busy connection from
// starving the others when --connections holds many.
constexpr int kReadsPerTurn = 16;
// Parallel handshakes for --connections: enough to open hundreds of
// connections to a distant endpoint in a few round trips, few enough not to
// look like a flood.
constexpr size_t kOpeners = 16;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

struct Session {
  WsClient client;
  ProbeResult result;
  enum class State { kOpen, kClosing, kDone } state = State::kDone;
  Clock::time_point end_at = Clock::time_point::max();
  Clock::time_point next_ping = Clock::time_point::max();
  Clock::time_point close_deadline = Clock::time_point::max();
  std::map<std::string, Clock::time_point> pings_in_flight;  // payload → sent at
  uint64_t ping_seq = 0;
  double last_in_s = 0;  // last incoming frame (for gaps)
  std::vector<StampedArrival> stamps;
};

class Prober {
 public:
  Prober(const ProbeConfig& config, const ProbeHooks& hooks) : config_(config), hooks_(hooks) {}

  std::vector<ProbeResult> run(size_t connections);

 private:
  // Opener threads: connect and handshake one session (touches only it).
  void handshake(Session& s, size_t index) const;
  void open_sessions(size_t connections);
  // Loop thread: take over a session whose handshake is done.
  void activate(Session& s);
  void take_opened();
  void record(Session& s, const FrameEvent& e);
  void send(Session& s, ws::Opcode op, std::string_view payload, std::string detail, double at);
  void on_readable(Session& s);
  // Takes every complete message the frame reader holds; a protocol error
  // starts the close and ends the session. False once the session is done.
  bool drain(Session& s);
  void on_message(Session& s, ws::Message& m, double at);
  void on_data(Session& s, ws::Message& m, double at);
  void begin_close(Session& s, uint16_t code, std::string_view reason, Ending ending);
  void dropped(Session& s, TcpEnd end, const std::string& error);
  void finish(Session& s);
  void flush(Session& s);
  void on_timers(Session& s, Clock::time_point now);
  void read_stdin(Session& s);
  void send_line(Session& s, std::string_view line);
  double at(const Session& s) const { return s.client.since_start(Clock::now()); }

  const ProbeConfig& config_;
  const ProbeHooks& hooks_;
  std::vector<std::unique_ptr<Session>> sessions_;  // owned by the loop thread

  // Handshakes run on up to kOpeners threads so that N connections to a
  // distant endpoint open in parallel while the loop already serves (pongs,
  // timestamps) the ones that are open. An opener hands a finished session
  // over through opened_ and wakes the loop through wake_pipe_.
  std::mutex opened_mutex_;
  std::vector<std::unique_ptr<Session>> opened_;  // guarded by opened_mutex_
  size_t openers_running_ = 0;                    // guarded by opened_mutex_
  std::atomic<size_t> next_index_{0};
  int wake_pipe_[2] = {-1, -1};
  bool interrupted_ = false;  // SIGINT/SIGTERM seen: sessions are being closed
  // --cat input state (session 0 only).
  bool stdin_open_ = false;
  std::string stdin_buffer_;
  size_t stdin_line_ = 0;
  bool stdin_overlong_ = false;  // skipping the rest of a line over kMaxInputLine
};

void Prober::handshake(Session& s, size_t index) const {
  ProbeResult& r = s.result;
  r.index = index;
  r.handshake = s.client.open(config_.url, config_.client);
  auto& e = r.evidence;
  e.cat_mode = config_.cat;
  e.answers_pings = config_.answer_pings;
  e.app_pong = config_.app_pong;
  e.duration_s = config_.duration_s.value_or(0);
  e.status = r.handshake.status;
  e.error = r.handshake.error;
  e.extensions = r.handshake.extensions;  // a refused 101 names the extension too
  e.deflate_offered = config_.client.offer_deflate;
  r.intermediaries = fingerprint(r.handshake.headers);
  e.intermediaries = r.intermediaries;
  // Only shown (the confirm command in the verdict): never with the token.
  e.url = redact_url_token(config_.url.text);
  switch (r.handshake.outcome) {
    case HandshakeInfo::Outcome::kUnreachable: e.ending = Ending::kUnreachable; break;
    case HandshakeInfo::Outcome::kTimeout: e.ending = Ending::kHandshakeTimeout; break;
    case HandshakeInfo::Outcome::kRefused: e.ending = Ending::kRefused; break;
    case HandshakeInfo::Outcome::kOpen: break;
  }
  if (r.handshake.outcome != HandshakeInfo::Outcome::kOpen) {
    e.end_s = at(s);
    r.verdict = decide(e);
    s.state = Session::State::kDone;
    return;
  }
  e.inflated = s.client.inflating();
  e.handshake_done_s = (r.handshake.connect_ms + r.handshake.handshake_ms) / 1000.0;
  s.last_in_s = e.handshake_done_s;
  s.state = Session::State::kOpen;
}

void Prober::activate(Session& s) {
  ProbeResult& r = s.result;
  if (hooks_.on_open) hooks_.on_open(r);
  if (s.state != Session::State::kOpen) return;
  auto& e = r.evidence;
  // Timers count from the end of the handshake, not from when the loop took
  // the connection over.
  const auto open_at = s.client.started() + seconds(e.handshake_done_s);
  if (config_.duration_s) s.end_at = open_at + seconds(*config_.duration_s);
  if (config_.ping_interval_s > 0) s.next_ping = open_at + seconds(config_.ping_interval_s);
  for (const auto& text : config_.send) {
    send(s, ws::Opcode::kText, text, "", at(s));
    ++e.messages_out;
  }
  flush(s);
  // Frames that came with the 101 are already in the reader: a protocol
  // error among them is one too (conformance case 1.3), not only messages.
  drain(s);
}

bool Prober::drain(Session& s) {
  ws::Message m;
  for (;;) {
    if (s.state == Session::State::kDone) return false;
    auto status = s.client.next(&m);
    if (status == ws::FrameReader::Status::kNeedMore) return true;
    if (status == ws::FrameReader::Status::kError) {
      auto& e = s.result.evidence;
      if (s.state == Session::State::kOpen) {
        e.protocol_error = s.client.error_reason();
        begin_close(s, s.client.error_code(), s.client.error_reason(), Ending::kProtocolError);
      }
      finish(s);  // nothing more can be read from a broken stream
      return false;
    }
    on_message(s, m, at(s));
  }
}

void Prober::record(Session& s, const FrameEvent& e) {
  ProbeResult& r = s.result;
  ++r.frames_total;
  r.frames.push_back(e);
  if (r.frames.size() > config_.frame_log) r.frames.pop_front();
  if (hooks_.on_frame) hooks_.on_frame(r, e);
}

void Prober::send(Session& s, ws::Opcode op, std::string_view payload, std::string detail, double t) {
  s.client.send(op, payload);
  auto& e = s.result.evidence;
  if (op != ws::Opcode::kClose) e.last_frame_out_s = t;
  if (op == ws::Opcode::kText || op == ws::Opcode::kBinary) s.result.bytes_out += payload.size();
  record(s, {t, false, op, payload.size(), std::move(detail)});
}

void Prober::flush(Session& s) {
  if (s.state == Session::State::kDone) return;
  std::string error;
  if (!s.client.flush(&error)) {
    // A write failure is the same story as a read failure: the peer is gone.
    bool reset = error.find("reset") != std::string::npos || error.find("Broken pipe") != std::string::npos;
    dropped(s, reset ? TcpEnd::kRst : TcpEnd::kFin, error);
  }
}

void Prober::on_readable(Session& s) {
  for (int i = 0; i < kReadsPerTurn && s.state != Session::State::kDone; ++i) {
    std::string error;
    auto io = s.client.read_some(&error);
    if (io == WsClient::Io::kWouldBlock) break;
    if (io == WsClient::Io::kEof || io == WsClient::Io::kReset || io == WsClient::Io::kError) {
      // Frames that arrived before the end still count, in order.
      ws::Message m;
      while (s.state != Session::State::kDone &&
             s.client.next(&m) == ws::FrameReader::Status::kMessage) {
        on_message(s, m, at(s));
      }
      if (s.state == Session::State::kDone) return;
      if (io == WsClient::Io::kEof) {
        dropped(s, TcpEnd::kFin, "");
      } else {
        dropped(s, TcpEnd::kRst, io == WsClient::Io::kError ? error : "");
      }
      return;
    }
    if (!drain(s)) return;
    if (!s.client.has_pending() && io != WsClient::Io::kData) break;
  }
}

void Prober::on_message(Session& s, ws::Message& m, double t) {
  ProbeResult& r = s.result;
  auto& e = r.evidence;
  if (m.opcode != ws::Opcode::kClose) {
    double gap = t - s.last_in_s;
    if (gap > e.longest_gap_s) {
      e.longest_gap_s = gap;
      e.longest_gap_at_s = t;
    }
    s.last_in_s = t;
    e.last_frame_in_s = t;
  }
  switch (m.opcode) {
    case ws::Opcode::kPing: {
      ++e.pings_received;
      record(s, {t, true, m.opcode, m.payload.size(), ""});
      if (config_.answer_pings && s.state == Session::State::kOpen) {
        send(s, ws::Opcode::kPong, m.payload, "", t);
        ++e.pings_answered;
        flush(s);
      } else if (!e.first_unanswered_ping_s) {
        e.first_unanswered_ping_s = t;
      }
      return;
    }
    case ws::Opcode::kPong: {
      ++e.pongs_received;
      std::string detail = "unsolicited";
      auto it = s.pings_in_flight.find(m.payload);
      if (it != s.pings_in_flight.end()) {
        double rtt = std::chrono::duration<double, std::milli>(Clock::now() - it->second).count();
        if (r.rtt_ms.size() < config_.max_samples) r.rtt_ms.push_back(rtt);
        r.last_rtt_ms = rtt;
        char buf[32];
        std::snprintf(buf, sizeof buf, "rtt %.2f ms", rtt);
        detail = buf;
        s.pings_in_flight.erase(it);
      }
      record(s, {t, true, m.opcode, m.payload.size(), detail});
      return;
    }
    case ws::Opcode::kClose: {
      uint16_t code = 1005;
      std::string reason;
      ws::parse_close_payload(m.payload, &code, &reason);  // the reader validated it
      record(s, {t, true, m.opcode, m.payload.size(), std::to_string(code) + (reason.empty() ? "" : " " + reason)});
      if (s.state == Session::State::kClosing) {
        e.server_answered_close = true;  // the answer to our close
        finish(s);
        return;
      }
      e.ending = Ending::kServerClose;
      e.close_by = CloseBy::kServer;
      e.close_code = code;
      e.close_reason = reason;
      e.end_s = t;
      e.input_ended = config_.cat && !stdin_open_;
      // Echo the code (RFC 6455 §5.5.1); 1005 cannot be sent, so 1000.
      send(s, ws::Opcode::kClose, ws::close_payload(code == 1005 ? 1000 : code, ""), "echo", t);
      flush(s);
      finish(s);
      return;
    }
    case ws::Opcode::kText:
    case ws::Opcode::kBinary:
    case ws::Opcode::kContinuation:
      on_data(s, m, t);
      return;
  }
}

void Prober::on_data(Session& s, ws::Message& m, double t) {
  ProbeResult& r = s.result;
  auto& e = r.evidence;
  ++e.messages_in;
  r.bytes_in += m.payload.size();
  if (!e.first_message_s) e.first_message_s = t;
  e.last_message_s = t;
  std::string type;
  if (m.opcode == ws::Opcode::kText && !m.payload.empty() && m.payload.front() == '{') {
    auto json = nlohmann::json::parse(m.payload, nullptr, false);
    if (json.is_object()) {
      auto it = json.find("type");
      if (it != json.end() && it->is_string()) type = it->get<std::string>();
      auto ts = json.find("timestamp");
      if (ts != json.end() && ts->is_number()) {
        double stamp = ts->get<double>();
        if (stamp > kMillisecondStamp) stamp /= 1000.0;
        if (stamp > kMinEpochStamp && s.stamps.size() < std::min(kMaxStamps, config_.max_samples))
          s.stamps.push_back({t, wall_seconds() - stamp});
      }
    }
  }
  ++r.types[type.empty() ? (m.opcode == ws::Opcode::kBinary ? "(binary)" : "(no type)") : type];
  record(s, {t, true, m.opcode, m.payload.size(), type});
  if (type == "ping") {
    ++e.app_pings_received;
    if (config_.app_pong && s.state == Session::State::kOpen) {
      send(s, ws::Opcode::kText, R"({"type":"pong"})", "pong", t);
      ++e.app_pongs_sent;
      ++e.messages_out;
      flush(s);
    } else if (!e.first_unanswered_app_ping_s) {
      e.first_unanswered_app_ping_s = t;
    }
  }
  if (hooks_.on_message && !hooks_.on_message(m.payload)) {
    stdin_open_ = false;
    begin_close(s, ws::kCloseGoingAway, "output closed", Ending::kInterrupted);
  }
}

void Prober::begin_close(Session& s, uint16_t code, std::string_view reason, Ending ending) {
  if (s.state != Session::State::kOpen) return;
  auto& e = s.result.evidence;
  const double t = at(s);
  e.ending = ending;
  e.close_by = CloseBy::kClient;
  e.close_code = code;
  e.close_reason = std::string(reason);
  e.end_s = t;
  e.input_ended = config_.cat && !stdin_open_;
  e.server_answered_close = false;
  send(s, ws::Opcode::kClose, ws::close_payload(code, reason), std::to_string(code) + " " + std::string(reason), t);
  s.state = Session::State::kClosing;
  s.close_deadline = Clock::now() + seconds(config_.close_wait_s);
  flush(s);
}

void Prober::dropped(Session& s, TcpEnd end, const std::string& error) {
  if (s.state == Session::State::kDone) return;
  auto& e = s.result.evidence;
  s.result.tcp_error = error;
  if (s.state == Session::State::kOpen) {
    e.ending = Ending::kDropped;
    e.close_by = CloseBy::kServer;  // its FIN or RST came before the probe did anything to end it
    e.close_code = ws::kCloseAbnormal;
    e.close_reason.clear();
    e.tcp_end = end;
    e.end_s = at(s);
    e.input_ended = config_.cat && !stdin_open_;
  }
  // In kClosing the server dropped instead of answering our close:
  // server_answered_close stays false and the ending is the probe's.
  finish(s);
}

void Prober::finish(Session& s) {
  if (s.state == Session::State::kDone) return;
  s.client.close();
  s.state = Session::State::kDone;
  auto& e = s.result.evidence;
  e.lags = analyze_lags(s.stamps);
  s.result.verdict = decide(e);
}

void Prober::on_timers(Session& s, Clock::time_point now) {
  if (s.state == Session::State::kOpen && now >= s.end_at) {
    begin_close(s, ws::kCloseNormal, "probe finished", Ending::kStillOpen);
  }
  if (s.state == Session::State::kOpen && now >= s.next_ping) {
    std::string payload = "ws-probe " + std::to_string(++s.ping_seq);
    s.pings_in_flight[payload] = now;
    ++s.result.evidence.pings_sent;
    send(s, ws::Opcode::kPing, payload, "", at(s));
    flush(s);
    s.next_ping = now + seconds(config_.ping_interval_s);
  }
  if (s.state == Session::State::kClosing && now >= s.close_deadline) finish(s);
}

void Prober::send_line(Session& s, std::string_view line) {
  ++stdin_line_;
  if (!is_valid_utf8(line)) {
    ++s.result.bad_input_lines;
    if (hooks_.on_bad_input) hooks_.on_bad_input(stdin_line_, "not UTF-8, not sent");
    return;
  }
  send(s, ws::Opcode::kText, line, "", at(s));
  ++s.result.evidence.messages_out;
}

void Prober::read_stdin(Session& s) {
  char buf[65536];
  ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    stdin_open_ = false;
    if (!stdin_buffer_.empty() && !stdin_overlong_) send_line(s, stdin_buffer_);
    stdin_buffer_.clear();
    flush(s);
    begin_close(s, ws::kCloseNormal, "input ended", Ending::kInputEnded);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    if (buf[i] != '\n') continue;
    if (stdin_overlong_) {
      stdin_overlong_ = false;
    } else {
      stdin_buffer_.append(buf + start, i - start);
      send_line(s, stdin_buffer_);
    }
    stdin_buffer_.clear();
    start = i + 1;
  }
  if (!stdin_overlong_) stdin_buffer_.append(buf + start, static_cast<size_t>(n) - start);
  if (stdin_buffer_.size() > kMaxInputLine) {
    ++stdin_line_;
    ++s.result.bad_input_lines;
    if (hooks_.on_bad_input) hooks_.on_bad_input(stdin_line_, "longer than 16 MiB, not sent");
    stdin_buffer_.clear();
    stdin_overlong_ = true;
  }
  flush(s);
}

void Prober::open_sessions(size_t connections) {
  for (;;) {
    const size_t index = next_index_++;
    if (index >= connections || shutdown::requested()) break;
    auto session = std::make_unique<Session>();
    handshake(*session, index);
    std::lock_guard<std::mutex> lock(opened_mutex_);
    opened_.push_back(std::move(session));
    [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], "o", 1);  // a full pipe already wakes the loop
  }
  std::lock_guard<std::mutex> lock(opened_mutex_);
  --openers_running_;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], "e", 1);
}

void Prober::take_opened() {
  char drain[256];
  while (::read(wake_pipe_[0], drain, sizeof drain) > 0) {
  }
  std::vector<std::unique_ptr<Session>> ready;
  {
    std::lock_guard<std::mutex> lock(opened_mutex_);
    ready.swap(opened_);
  }
  for (auto& s : ready) {
    Session& session = *s;
    sessions_.push_back(std::move(s));
    activate(session);
    if (interrupted_) begin_close(session, ws::kCloseGoingAway, "probe interrupted", Ending::kInterrupted);
    if (config_.cat && session.result.index == 0) stdin_open_ = session.state == Session::State::kOpen;
  }
}

std::vector<ProbeResult> Prober::run(size_t connections) {
  if (::pipe2(wake_pipe_, O_NONBLOCK | O_CLOEXEC) != 0) {
    std::vector<ProbeResult> out(1);
    out[0].evidence.ending = Ending::kUnreachable;
    out[0].evidence.error = "cannot create a pipe: " + std::string(std::strerror(errno));
    out[0].verdict = decide(out[0].evidence);
    return out;
  }
  // One connection opens on this thread: nothing else needs serving while it
  // handshakes (bounded by the connect timeout), and a thread per open would
  // leave its stack in glibc's cache — per watch of ws-probe --serve, which
  // opens one connection after another.
  const size_t threads = connections == 1 ? 0 : std::min(connections, kOpeners);
  openers_running_ = std::max<size_t>(threads, 1);
  std::vector<std::thread> openers;
  openers.reserve(threads);
  for (size_t i = 0; i < threads; ++i) openers.emplace_back([this, connections] { open_sessions(connections); });
  if (threads == 0) open_sessions(connections);
  interrupted_ = false;

  std::vector<pollfd> fds;
  std::vector<Session*> polled;
  for (;;) {
    const auto now = Clock::now();
    if (!interrupted_ && shutdown::requested()) {
      interrupted_ = true;
      stdin_open_ = false;
      for (auto& s : sessions_) begin_close(*s, ws::kCloseGoingAway, "probe interrupted", Ending::kInterrupted);
    }
    for (auto& s : sessions_) on_timers(*s, now);

    fds.clear();
    polled.clear();
    auto wake = Clock::time_point::max();
    bool pending = false;
    for (auto& s : sessions_) {
      if (s->state == Session::State::kDone) continue;
      short events = POLLIN;
      if (s->client.queued() > 0) events |= POLLOUT;
      fds.push_back({s->client.fd(), events, 0});
      polled.push_back(s.get());
      if (s->client.has_pending()) pending = true;
      if (s->state == Session::State::kOpen) wake = std::min({wake, s->end_at, s->next_ping});
      if (s->state == Session::State::kClosing) wake = std::min(wake, s->close_deadline);
    }
    bool opening;
    {
      std::lock_guard<std::mutex> lock(opened_mutex_);
      opening = openers_running_ > 0 || !opened_.empty();
    }
    if (polled.empty() && !opening) break;
    const size_t session_fds = fds.size();
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    fds.push_back({shutdown::fd(), static_cast<short>(interrupted_ ? 0 : POLLIN), 0});
    Session* cat_session = config_.cat && !sessions_.empty() ? sessions_[0].get() : nullptr;
    const bool poll_stdin = stdin_open_ && cat_session && cat_session->state == Session::State::kOpen &&
                            cat_session->client.queued() < kMaxQueuedOut;
    if (poll_stdin) fds.push_back({STDIN_FILENO, POLLIN, 0});

    int timeout_ms = -1;
    if (pending) {
      timeout_ms = 0;
    } else if (wake != Clock::time_point::max()) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
      timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 60000));
    } else {
      timeout_ms = 60000;  // nothing scheduled: wake up now and then anyway
    }
    int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) break;

    for (size_t i = 0; i < session_fds; ++i) {
      Session& s = *polled[i];
      if (s.state == Session::State::kDone) continue;
      if (fds[i].revents & POLLOUT) flush(s);
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) || s.client.has_pending()) on_readable(s);
    }
    if (poll_stdin && (fds.back().revents & (POLLIN | POLLHUP | POLLERR))) read_stdin(*cat_session);
    if (fds[session_fds].revents & POLLIN) take_opened();
  }

  for (auto& t : openers) t.join();
  take_opened();  // sessions handed over after the last check (only when interrupted)
  for (auto& s : sessions_) {
    if (s->state != Session::State::kDone) {
      begin_close(*s, ws::kCloseGoingAway, "probe interrupted", Ending::kInterrupted);
      finish(*s);
    }
  }
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
  std::sort(sessions_.begin(), sessions_.end(),
            [](const auto& a, const auto& b) { return a->result.index < b->result.index; });
  std::vector<ProbeResult> out;
  out.reserve(sessions_.size());
  for (auto& s : sessions_) out.push_back(std::move(s->result));
  return out;
}

}  // namespace

std::vector<ProbeResult> run_probe(const ProbeConfig& config, size_t connections, const ProbeHooks& hooks) {
  Prober prober(config, hooks);
  return prober.run(connections);
}

void confirm(const ProbeConfig& config, ProbeResult& first, bool run_trial, const ProbeHooks& hooks) {
  auto plan = plan_confirm(first.evidence);
  if (!plan) return;
  ConfirmReport report;
  report.plan = *plan;
  if (!run_trial || shutdown::requested()) {
    first.confirm = std::move(report);  // tried = false: the verdict names both candidates
    return;
  }
  ProbeConfig trial_config = config;
  trial_config.duration_s = plan->hold_s;
  trial_config.ping_interval_s = plan->ping_every_s;
  trial_config.cat = false;
  auto trials = run_probe(trial_config, 1, hooks);
  if (trials.empty()) {  // interrupted before it connected
    first.confirm = std::move(report);
    return;
  }
  first.verdict = settle(first.evidence, *plan, trials.front().evidence, &report);
  first.confirm = std::move(report);
}

IdleSearchRun find_idle_timeout(const ProbeConfig& base, double max_s, const ProbeHooks& hooks,
                                const std::function<void(int, double)>& on_trial, double budget_s) {
  const auto deadline = Clock::now() + seconds(budget_s);
  IdleSearchRun run;
  run.max_s = max_s;
  run.search = IdleSearch(max_s);
  double greeting = 0;  // how long after its handshake the last trial's server went quiet
  while (!run.search.done() && !shutdown::requested()) {
    const double hold = run.search.next_silence_s() + greeting;
    if (budget_s > 0 && Clock::now() + seconds(hold + base.client.connect_timeout_s + base.close_wait_s) > deadline) {
      run.out_of_budget = true;
      break;
    }
    if (on_trial) on_trial(run.search.trials() + 1, hold);
    ProbeConfig config = base;
    config.duration_s = hold;
    auto results = run_probe(config, 1, hooks);
    if (results.empty()) break;  // interrupted before it connected
    ProbeResult& r = results.front();
    const auto& e = r.evidence;
    if (run.trials.empty()) {
      run.intermediaries = r.intermediaries;
      run.connect_ms = r.handshake.connect_ms;
      run.handshake_ms = r.handshake.handshake_ms;
      run.status = r.handshake.status;
    }
    if (r.handshake.outcome != HandshakeInfo::Outcome::kOpen || e.ending == Ending::kProtocolError) {
      run.stopped_by = std::move(r);  // cannot measure anything: its own report is the answer
      return run;
    }
    if (e.ending == Ending::kInterrupted) break;
    const double silence = e.silence_before_end_s();
    const bool survived = e.ending == Ending::kStillOpen;
    if (!survived && silence < kMinIdleSilence) {
      // Ended before any idle timer could matter (a waiting server, a reset,
      // a close): that, not an idle timeout, is the finding.
      run.stopped_note = "the connection ended after " + duration_text(silence) +
                         " of silence, too soon for an idle timeout; nothing to measure.";
      run.stopped_by = std::move(r);
      return run;
    }
    if (e.messages_in > 0 && e.last_message_s && *e.last_message_s - e.handshake_done_s > kGreetingWindow)
      run.server_traffic = true;
    run.search.record(survived, silence);
    run.trials.push_back({hold, survived, silence, e.close_code, e.tcp_end, r.verdict.cause});
    greeting = e.last_frame_in_s ? std::max(0.0, *e.last_frame_in_s - e.handshake_done_s) : 0.0;
  }
  return run;
}

}  // namespace smws::net
