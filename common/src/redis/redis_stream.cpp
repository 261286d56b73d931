// SPDX-License-Identifier: Apache-2.0
// RedisStream: the link's state machine (connect, load, tail, append,
// report, decide; down and back up). See redis_stream.h for the contract and
// docs/scale-out.md for the keys; the I/O is redis_connection.cpp, the
// decoding redis_reply.cpp, the scripts scripts/*.lua, the Sentinel part
// redis_sentinel.cpp.
#include "smws/redis_stream.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <hiredis/hiredis.h>

#include "smws/clock.h"
#include "smws/host_address.h"
#include "smws/log.h"
#include "smws/redis_connection.h"
#include "smws/redis_reply.h"
#include "smws/redis_scripts.h"

namespace smws::redis {
namespace {

// An appender waiting for the tails polls the slowest position at once for
// this long, then every kWaitPoll (the stream's timerfd).
constexpr double kEagerWait = 0.05;
// The least time between two reports of a moving tail (the stream's
// timerfd sends the last one of a burst).
constexpr double kReportSpacing = 0.005;
// How often an appender still waiting after kEagerWait asks again.
constexpr double kWaitPoll = 0.002;

// The epoll tags of the lookup's eventfd and of the report timer
// (Connection pointers tag the others).
char lookup_tag;
char timer_tag;

}  // namespace

RedisStream::RedisStream(StreamOptions options, Listener* listener)
    : options_(std::move(options)),
      listener_(listener),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      buffer_(options_.buffer, options_.relay_id) {
  auto lost = [this](const Connection& c, bool connecting, const std::string& why) {
    on_lost(c, connecting, why);
  };
  cmd_ = std::make_unique<Connection>(epoll_fd_, "commands", lost);
  tail_ = std::make_unique<Connection>(epoll_fd_, "tail", lost);
  sentinel_ask_ = std::make_unique<Connection>(
      epoll_fd_, "sentinel", [this](const Connection&, bool connecting, const std::string& why) {
        on_sentinel_lost(connecting, why);
      });
  sentinel_sub_ = std::make_unique<Connection>(
      epoll_fd_, "sentinel subscription", [this](const Connection&, bool, const std::string& why) {
        if (destroying_) return;
        sentinel_subscribed_ = false;
        sentinel_sub_retry_ = now_ + 1.0;
        log::note(1, "redis: the Sentinel subscription was lost: " + why);
      });
  if (options_.sentinels.empty()) {
    master_host_ = options_.url.host;
    master_port_ = options_.url.port;
  }
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &timer_tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  }
}

RedisStream::~RedisStream() {
  destroying_ = true;
  // A lookup thread still running keeps its state (and eventfd) alive.
  if (lookup_.active()) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lookup_.event_fd(), nullptr);
  drop_now();
  sentinel_ask_->close();
  sentinel_sub_->close();
  if (timer_fd_ >= 0) ::close(timer_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void RedisStream::arm_timer(double seconds) {
  if (timer_fd_ < 0 || timer_armed_) return;
  itimerspec spec{};
  const long ns = std::max(1L, static_cast<long>(seconds * 1e9));
  spec.it_value.tv_sec = ns / 1000000000L;
  spec.it_value.tv_nsec = ns % 1000000000L;
  if (::timerfd_settime(timer_fd_, 0, &spec, nullptr) == 0) timer_armed_ = true;
}

void RedisStream::on_timer() {
  uint64_t expirations;
  (void)!::read(timer_fd_, &expirations, sizeof expirations);
  timer_armed_ = false;
  if (append_waiting_ || report_again_) report_tail(/*now=*/true);
}

const char* RedisStream::append_script() { return append_lua().c_str(); }
const char* RedisStream::decide_script() { return decide_lua().c_str(); }
const char* RedisStream::load_script() { return load_lua().c_str(); }

StreamStats RedisStream::stats() const {
  StreamStats s = stats_;
  s.buffer_dropped = buffer_.dropped_total();
  s.buffered = buffer_.size() + (in_flight_ ? in_flight_->events.size() : 0);
  if (!master_host_.empty()) {
    s.master = (master_host_.find(':') != std::string::npos ? "[" + master_host_ + "]" : master_host_) + ":" +
               std::to_string(redis_port());
  }
  return s;
}

// ------------------------------------------------------------ connecting

void RedisStream::start(double now) {
  now_ = now;
  connect(now);
}

void RedisStream::connect(double now) {
  now_ = now;
  state_ = State::kConnecting;
  drop_requested_ = false;
  if (!options_.sentinels.empty()) {
    // Every attempt asks the Sentinels: the one that answers names the
    // master as it is now (a failover may be under way or done).
    sentinel_tries_ = 0;
    sentinel_error_.clear();
    ask_next_sentinel();
    return;
  }
  resolve_then(options_.url.host, /*sentinel=*/false);
}

std::string RedisStream::where() const {
  if (options_.sentinels.empty()) return options_.url.display();
  RedisUrl u = options_.url;
  u.host = master_host_;
  u.port = static_cast<uint16_t>(master_port_);
  return u.display() + " (master " + options_.master_name + ")";
}

int RedisStream::redis_port() const { return options_.sentinels.empty() ? options_.url.port : master_port_; }

void RedisStream::resolve_then(const std::string& host, bool sentinel) {
  if (is_numeric_host(host)) {
    if (sentinel) {
      ask_sentinel_at(host);
    } else {
      connect_to(host);
    }
    return;
  }
  // A name: resolved off the loop thread (on_lookup_done goes on). One
  // lookup at a time: a reconnect while an old one hangs waits for it.
  awaiting_lookup_ = true;
  wanted_host_ = host;
  lookup_for_sentinel_ = sentinel;
  if (!lookup_.active()) start_lookup();
}

void RedisStream::start_lookup() {
  lookup_host_ = wanted_host_;
  Status started = lookup_.start(lookup_host_, options_.lookup ? options_.lookup : LookupFn(&system_lookup));
  if (!started.ok()) {
    lookup_.reset();
    awaiting_lookup_ = false;
    fail(started.message);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &lookup_tag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, lookup_.event_fd(), &ev) != 0) {
    const int err = errno;
    lookup_.reset();
    awaiting_lookup_ = false;
    fail("cannot resolve " + lookup_host_ + ": epoll: " + std::strerror(err));
    return;
  }
  lookup_started_ = now_;
}

void RedisStream::on_lookup_done() {
  if (!lookup_.active() || !lookup_.done()) return;
  std::string address;
  Status result = lookup_.result(&address);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lookup_.event_fd(), nullptr);
  lookup_.reset();
  // A lookup that outlived its attempt (timed out, link down since): the
  // next attempt starts a fresh one, as DNS may have changed meanwhile.
  if (!awaiting_lookup_ || state_ != State::kConnecting) return;
  if (lookup_host_ != wanted_host_) {
    // The answer for an older attempt's name (another Sentinel): ask anew.
    start_lookup();
    return;
  }
  awaiting_lookup_ = false;
  if (!result.ok()) {
    if (lookup_for_sentinel_) {
      on_sentinel_lost(/*connecting=*/true, result.message);
      return;
    }
    fail(result.message);
    return;
  }
  if (lookup_for_sentinel_) {
    ask_sentinel_at(address);
  } else {
    connect_to(address);
  }
}

// The Sentinel part (ask, subscribe, follow) is redis_sentinel.cpp.

void RedisStream::run_deferred() {
  if (drop_requested_) drop_now();
  if (sentinel_ask_done_) {
    sentinel_ask_done_ = false;
    sentinel_ask_->close();
  }
  if (sentinel_retry_) {
    sentinel_retry_ = false;
    sentinel_ask_->close();
    if (state_ == State::kConnecting && sentinel_asking_) ask_next_sentinel();
  }
}

void RedisStream::connect_to(const std::string& address) {
  for (Connection* c : {cmd_.get(), tail_.get()}) {
    Status opened = c->open(address, redis_port());
    if (!opened.ok()) {
      fail(opened.code == Status::kSystem ? opened.message
                                          : "cannot connect to " + where() + ": " + opened.message);
      return;
    }
  }
  // Each connection first authenticates and selects the database; the
  // command connection then loads the group's state.
  for (Connection* c : {cmd_.get(), tail_.get()}) {
    if (options_.url.has_auth()) {
      std::vector<std::string> argv{"AUTH"};
      if (!options_.url.user.empty()) argv.push_back(options_.url.user);
      argv.push_back(options_.url.password);
      send(c, Kind::kHandshake, argv);
    }
    if (options_.url.db != 0) send(c, Kind::kHandshake, {"SELECT", std::to_string(options_.url.db)});
    send(c, Kind::kHandshake, {"PING"});
  }
  // An address from a Sentinel may be a master demoted since: ROLE says.
  if (!options_.sentinels.empty()) send(cmd_.get(), Kind::kRole, {"ROLE"});
  request_load(/*full=*/!loaded_once_);
}

// ------------------------------------------------------------ commands and replies

void RedisStream::send(Connection* c, Kind kind, const std::vector<std::string>& argv,
                       std::function<void(DecideOutcome)> done, double allowed) {
  // The tail's XREAD BLOCK answers within kTailBlockMs when idle.
  if (allowed < 0) allowed = c == tail_.get() ? kTailBlockMs / 1000.0 + kReplyTimeout : kReplyTimeout;
  const uint64_t generation = tail_generation_;
  c->command(argv, now_, allowed, [this, kind, done = std::move(done), generation](redisReply* reply) {
    if (destroying_) {
      if (done) done(DecideOutcome::kUnavailable);
      return;
    }
    handle_reply(kind, reply, done, generation);
  });
}

void RedisStream::handle_reply(Kind kind, redisReply* reply, const std::function<void(DecideOutcome)>& done,
                               uint64_t generation) {
  if (!reply) {
    // The connection went away before the answer. A decide may or may not
    // have been applied: the tail shows it if it was.
    if (done) done(DecideOutcome::kUnavailable);
    if (kind == Kind::kTail) tail_in_flight_ = false;
    if (kind == Kind::kAppend || kind == Kind::kAppendWait) append_outstanding_ = false;  // resent on reconnect
    if (kind == Kind::kReport) report_in_flight_ = false;
    if (kind == Kind::kGateWait) gate_in_flight_ = false;  // read again on reconnect
    if (kind == Kind::kLoadMeta || kind == Kind::kLoadFull) load_in_flight_ = false;
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR && kind != Kind::kDecide) {
    std::string msg = reply_str(reply);
    if (kind == Kind::kHandshake && is_auth_refusal(msg)) {
      ++stats_.auth_failures;
      if (!down_logged_) log::error("redis: authentication failed at " + where() + ": " + msg +
                                    "; retrying");
      down_logged_ = true;
      fail("authentication failed: " + msg);
    } else {
      fail("refused: " + msg);
    }
    return;
  }
  switch (kind) {
    case Kind::kHandshake:
      return;
    case Kind::kRole: {
      const std::string role = decode_role(reply);
      if (role != "master") {
        fail(stats().master + " is not the master (ROLE: " + (role.empty() ? "?" : role) +
             "); asking the Sentinels again");
      }
      return;
    }
    case Kind::kAppendWait: {
      const uint64_t acks = decode_wait(reply);
      if (acks < static_cast<uint64_t>(options_.replicas)) {
        ++stats_.wait_timeouts;
        if (!wait_short_logged_) {
          log::warn("redis: WAIT: " + std::to_string(acks) + " of " + std::to_string(options_.replicas) +
                    " replicas acknowledged within " + std::to_string(options_.wait_timeout) +
                    " s (--redis-replicas); appends wait and WAIT is asked again");
          wait_short_logged_ = true;
        }
        // The connection's last write is still the append: wait for it again.
        send_wait(Kind::kAppendWait);
        return;
      }
      wait_short_logged_ = false;
      append_outstanding_ = false;
      acknowledge_append();
      return;
    }
    case Kind::kGateReport:
      slowest_tail_ = decode_report(reply).slowest;
      return;
    case Kind::kGateWait: {
      if (gate_generation_ != tail_generation_) {
        // A load moved the position since: these entries are stale.
        gate_in_flight_ = false;
        gated_.clear();
        tail();
        return;
      }
      const uint64_t acks = decode_wait(reply);
      if (acks < static_cast<uint64_t>(options_.replicas)) {
        ++stats_.wait_timeouts;
        if (!wait_short_logged_) {
          log::warn("redis: WAIT: " + std::to_string(acks) + " of " + std::to_string(options_.replicas) +
                    " replicas hold what the tail read (--redis-replicas); it is delivered once they do");
          wait_short_logged_ = true;
        }
        send_wait(Kind::kGateWait);
        return;
      }
      wait_short_logged_ = false;
      gate_in_flight_ = false;
      std::vector<GroupSnapshot::Entry> entries;
      entries.swap(gated_);
      deliver(std::move(entries), gated_hole_);
      return;
    }
    case Kind::kLoadMeta:
    case Kind::kLoadFull:
      on_load_reply(reply, kind == Kind::kLoadFull);
      return;
    case Kind::kTail:
      tail_in_flight_ = false;
      // A load since this XREAD was sent moved the position: its entries
      // are relative to the old one.
      if (generation != tail_generation_) {
        tail();
        return;
      }
      on_tail_reply(reply);
      return;
    case Kind::kAppend:
      // With --redis-replicas the batch stays outstanding until its WAIT.
      if (options_.replicas == 0) append_outstanding_ = false;
      on_append_reply(reply);
      return;
    case Kind::kReport: {
      report_in_flight_ = false;
      const ReportReply r = decode_report(reply);
      slowest_tail_ = r.slowest;
      // A relay that only tails learns here of a new epoch, or of a start
      // raised by another relay (load.lua): the whole state again.
      if (r.has_epoch && loaded_once_ && !load_in_flight_ && (r.epoch != epoch_ || r.start != epoch_start_)) {
        ++stats_.resyncs;
        log::warn("redis: stream " + options_.stream + " is in epoch " + r.epoch + " from seq " +
                  std::to_string(r.start) + ": reloading the group's state");
        request_load(true);
        return;
      }
      if (append_waiting_) flush();
      // Still waiting for a slower relay: ask again at once for a while
      // (it is usually a read or two behind), then every kWaitPoll.
      if (append_waiting_ && now_ - wait_started_ < kEagerWait) {
        report_tail(/*now=*/true);
      } else if (append_waiting_) {
        arm_timer(kWaitPoll);
      } else if (report_again_) {
        report_tail();
      }
      return;
    }
    case Kind::kDecide: {
      if (reply->type == REDIS_REPLY_ERROR) {
        log::warn("redis: decide refused: " + reply_str(reply));
        done(DecideOutcome::kUnavailable);
        return;
      }
      bool won = false;
      (void)decode_decide(reply, &won);  // another shape: not won
      done(won ? DecideOutcome::kWon : DecideOutcome::kNotPending);
      return;
    }
  }
}

// ------------------------------------------------------------ load

void RedisStream::request_load(bool full) {
  if (full) ++tail_generation_;
  load_in_flight_ = true;
  const std::string& s = options_.stream;
  // The epoch rule (load.lua): the caller's epoch and, at a reconnect, the
  // last entry it saw, which the Redis it reached must hold for the seq to
  // go on (a failover may have lost it): the last it read, or the last it
  // appended if that is later (acknowledged, maybe never read by anyone).
  const bool own = appended_seq_ > tail_pos_;
  const uint64_t floor = own ? appended_seq_ : tail_pos_;
  send(cmd_.get(), full ? Kind::kLoadFull : Kind::kLoadMeta,
       {"EVAL", load_lua(), "4", s, s + ":meta", s + ":machines", s + ":pending", next_epoch_candidate(),
        std::to_string(floor), full ? "1" : "0", std::to_string(options_.load_recent), epoch_,
        full ? std::string() : own ? appended_last_event_ : last_event_});
}

void RedisStream::on_load_reply(redisReply* reply, bool full) {
  load_in_flight_ = false;
  GroupSnapshot snap;
  Status decoded = decode_load(reply, full, &snap);
  if (!decoded.ok()) {
    fail(decoded.message);
    return;
  }
  if (!full) {
    // A reconnect: the same epoch means the tail resumes where it was (a
    // hole, if entries were trimmed meanwhile, makes it resync); another
    // epoch needs the whole state.
    if (snap.epoch != epoch_ || snap.start != epoch_start_) {
      ++stats_.resyncs;
      log::warn("redis: stream " + options_.stream + " is in epoch " + snap.epoch + " from seq " +
                std::to_string(snap.start) + " (this relay saw " + std::to_string(tail_pos_) + " in epoch " +
                epoch_ + "): reloading the group's state");
      request_load(true);
      return;
    }
    became_up();
    return;
  }
  ++tail_generation_;
  const bool first = !loaded_once_;
  if (!first) ++stats_.resyncs;
  loaded_once_ = true;
  epoch_ = snap.epoch;
  epoch_start_ = snap.start;
  tail_pos_ = snap.last_seq;
  last_event_ = !snap.recent.empty() && snap.recent.back().seq == snap.last_seq ? snap.recent.back().event
                                                                                : std::string();
  // Our acknowledged appends are in this state (same epoch: seq only
  // grows) or gone with the old epoch: none is left for the tail to read.
  appended_seq_ = 0;
  slowest_tail_ = -1;
  listener_->on_loaded(snap, first);
  became_up();
}

void RedisStream::became_up() {
  if (state_ != State::kUp) {
    if (state_ == State::kConnecting && down_logged_) log::note(0, "redis: connected again to " +
                                                                       where());
    state_ = State::kUp;
    down_reason_.clear();
    down_logged_ = false;
    backoff_ = kFirstBackoff;
    listener_->on_link(true);
  }
  tail();
  report_tail();
  flush();
}

// ------------------------------------------------------------ the tail

void RedisStream::tail() {
  if (state_ != State::kUp || tail_in_flight_ || gate_in_flight_ || !tail_->is_open()) return;
  tail_in_flight_ = true;
  send(tail_.get(), Kind::kTail,
       {"XREAD", "COUNT", std::to_string(kTailCount), "BLOCK", std::to_string(kTailBlockMs), "STREAMS",
        options_.stream, std::to_string(tail_pos_) + "-0"});
}

void RedisStream::on_tail_reply(redisReply* reply) {
  std::vector<GroupSnapshot::Entry> read;
  size_t skipped = 0;
  Status decoded = decode_xread(reply, &read, &skipped);
  if (!decoded.ok()) {
    fail(decoded.message);
    return;
  }
  for (size_t i = 0; i < skipped; ++i) {
    log::warn("redis: stream " + options_.stream + ": skipping an entry we did not write");
  }
  // Dense from tail_pos_ + 1, up to the first hole.
  bool hole = false;
  size_t dense = 0;
  for (uint64_t last = tail_pos_; dense < read.size(); last = read[dense++].seq) {
    if (next_tail_step(last, read[dense].seq) == TailStep::kResync) {
      hole = true;
      break;
    }
  }
  read.resize(dense);
  if (options_.replicas > 0 && !read.empty()) {
    // Delivered once N replicas hold it, so no client sees an entry a
    // failover could lose: a write of ours (the report) after the read,
    // then WAIT for the replication offset it reached.
    gated_ = std::move(read);
    gated_hole_ = hole;
    gate_in_flight_ = true;
    gate_generation_ = tail_generation_;
    send(cmd_.get(), Kind::kGateReport,
         {"EVAL", report_lua(), "2", options_.stream + ":tails", options_.stream + ":meta", options_.relay_id,
          std::to_string(tail_pos_)});
    send_wait(Kind::kGateWait);
    return;
  }
  deliver(std::move(read), hole);
}

void RedisStream::send_wait(Kind kind) {
  const long ms = std::max(1L, static_cast<long>(options_.wait_timeout * 1000));
  send(cmd_.get(), kind, {"WAIT", std::to_string(options_.replicas), std::to_string(ms)}, {},
       options_.wait_timeout + kReplyTimeout);
}

void RedisStream::deliver(std::vector<GroupSnapshot::Entry> read, bool hole) {
  if (!read.empty()) {
    tail_pos_ = read.back().seq;
    last_event_ = read.back().event;
    stats_.tailed += read.size();
    listener_->on_entries(read);
    report_tail();
  }
  if (append_waiting_) flush();
  if (hole) {
    // Trimmed before we read it, or another epoch: the whole state again.
    log::warn("redis: stream " + options_.stream + " has a hole after seq " + std::to_string(tail_pos_) +
              ": reloading the group's state");
    request_load(true);
    return;
  }
  tail();
}

void RedisStream::report_tail(bool now) {
  if (state_ != State::kUp || !cmd_->is_open()) return;
  // At most one in flight, and (unless asked now) one per kReportSpacing:
  // a report per tail read would double Redis's calls at a low event rate.
  const double t = now_;
  if (report_in_flight_) {
    report_again_ = true;
    return;
  }
  if (!now && t - last_report_ < kReportSpacing) {
    report_again_ = true;
    arm_timer(kReportSpacing - (t - last_report_));
    return;
  }
  report_again_ = false;
  report_in_flight_ = true;
  last_report_ = t;
  send(cmd_.get(), Kind::kReport,
       {"EVAL", report_lua(), "2", options_.stream + ":tails", options_.stream + ":meta", options_.relay_id,
        std::to_string(tail_pos_)});
}

// ------------------------------------------------------------ appends and decides

std::string RedisStream::next_epoch_candidate() {
  // Fresh for every call: a Redis that lost its data must never get back
  // the epoch it had, even from the relay that set that one.
  return options_.epoch_candidate + "." + std::to_string(++candidates_);
}

std::vector<std::string> RedisStream::keys_for_append() const {
  const std::string& s = options_.stream;
  return {s, s + ":meta", s + ":machines", s + ":mstate", s + ":pending", s + ":relays", s + ":morder", s + ":tails"};
}

bool RedisStream::append(Outgoing event) { return buffer_.push(std::move(event)); }

void RedisStream::flush() {
  // One batch in flight at a time keeps the group's order of this relay's
  // events without relying on pipelined scripts after a reconnect.
  if (state_ != State::kUp || !cmd_->is_open() || append_outstanding_) return;
  if (!in_flight_) {
    if (buffer_.empty()) return;
    // A batch resent after a reconnect goes regardless: it is already cut.
    // Unread by our tail, or by the slowest relay that reported lately.
    uint64_t read = tail_pos_;
    if (slowest_tail_ >= 0) read = std::min<uint64_t>(read, static_cast<uint64_t>(slowest_tail_));
    const size_t allowed = append_allowance(appended_seq_, read, options_.history);
    if (allowed == 0) {
      // on_tail_reply() flushes again once the tail has read ours.
      if (!append_waiting_) {
        ++stats_.append_waits;
        wait_started_ = now_;
      }
      append_waiting_ = true;
      return;
    }
    append_waiting_ = false;
    in_flight_ = std::make_unique<AppendBuffer::Batch>(buffer_.take(allowed));
  }
  std::vector<std::string> argv{"EVAL", append_lua(), "8"};
  for (std::string& k : keys_for_append()) argv.push_back(std::move(k));
  argv.push_back(next_epoch_candidate());
  argv.push_back(std::to_string(tail_pos_));
  argv.push_back(std::to_string(options_.history));
  argv.push_back(options_.relay_id);
  argv.push_back(std::to_string(in_flight_->counter));
  argv.push_back(std::to_string(options_.max_machines));
  argv.reserve(argv.size() + 4 * in_flight_->events.size());
  for (const Outgoing& o : in_flight_->events) {
    argv.push_back(std::string(1, o.kind));
    argv.push_back(o.key);
    argv.push_back(o.state);
    argv.push_back(o.event);
  }
  append_outstanding_ = true;
  send(cmd_.get(), Kind::kAppend, argv);
  if (options_.replicas > 0) send_wait(Kind::kAppendWait);
}

void RedisStream::on_append_reply(redisReply* reply) {
  AppendReply a;
  Status decoded = decode_append(reply, &a);
  if (!decoded.ok() || !in_flight_) {
    fail("unexpected reply to the append script");
    return;
  }
  // A resend after a lost reply may find the batch appended: the first
  // answer that appended it is the one to keep.
  if (!append_answered_ || !a.duplicate) {
    append_answered_ = true;
    append_was_duplicate_ = a.duplicate;
    answered_last_ = a.last;
    answered_has_slowest_ = a.has_slowest;
    answered_slowest_ = a.slowest;
    answered_epoch_ = a.epoch;
  }
  if (options_.replicas == 0) acknowledge_append();
  // else: acknowledged when its WAIT says enough replicas hold it.
}

void RedisStream::acknowledge_append() {
  if (!in_flight_ || !append_answered_) return;
  append_answered_ = false;
  if (append_was_duplicate_) {
    ++stats_.duplicates;
  } else {
    stats_.appended += in_flight_->events.size();
    appended_seq_ = answered_last_;
    if (!in_flight_->events.empty()) appended_last_event_ = in_flight_->events.back().event;
    if (answered_has_slowest_) slowest_tail_ = answered_slowest_;
  }
  ++stats_.append_batches;
  in_flight_.reset();
  if (answered_epoch_ != epoch_) {
    // Redis lost its data since our load; the tail would wait at our old
    // position for ever if the new numbers started below it.
    ++stats_.resyncs;
    request_load(true);
    return;
  }
  flush();
}

void RedisStream::decide(const std::string& interrupt_id, const std::string& decision,
                         std::function<void(DecideOutcome)> done) {
  if (state_ != State::kUp) {
    done(DecideOutcome::kUnavailable);
    return;
  }
  const std::string& s = options_.stream;
  send(cmd_.get(), Kind::kDecide,
       {"EVAL", decide_lua(), "3", s, s + ":meta", s + ":pending", interrupt_id, decision,
        std::to_string(options_.history)},
       std::move(done));
}

// ------------------------------------------------------------ down and back up

void RedisStream::on_lost(const Connection& c, bool connecting, const std::string& why) {
  if (destroying_) return;
  if (connecting) {
    fail("cannot connect to " + where() + ": " + why);
  } else {
    fail(std::string("connection lost (") + c.name() + "): " + why);
  }
}

void RedisStream::fail(const std::string& why) {
  if (destroying_) return;
  if (state_ != State::kDown) {
    if (!down_logged_) {
      log::warn("redis: " + why + "; retrying (events are buffered, up to " + std::to_string(options_.buffer) +
                ")");
      down_logged_ = true;
    } else {
      log::note(1, "redis: " + why);
    }
    bool was_up = state_ == State::kUp;
    state_ = State::kDown;
    down_reason_ = why;
    next_attempt_ = now_ + backoff_;
    // With Sentinels an attempt is cheap (ask, connect) and its answer is
    // the promoted replica as soon as the failover has one: at most
    // kSentinelMaxBackoff apart, so a lost +switch-master costs little.
    backoff_ = std::min(backoff_ * 2, options_.sentinels.empty() ? kMaxBackoff : kSentinelMaxBackoff);
    if (was_up) listener_->on_link(false);
  }
  if (sentinel_asking_) {
    sentinel_asking_ = false;
    sentinel_ask_done_ = true;
  }
  drop_requested_ = true;
}

void RedisStream::drop_now() {
  drop_requested_ = false;
  tail_in_flight_ = false;
  append_outstanding_ = false;
  gate_in_flight_ = false;
  gated_.clear();
  cmd_->close();
  tail_->close();
}

// ------------------------------------------------------------ the loop's calls

void RedisStream::on_readable() {
  now_ = monotonic_seconds();
  epoll_event events[4];
  int n = ::epoll_wait(epoll_fd_, events, 4, 0);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == &lookup_tag) {
      on_lookup_done();
      continue;
    }
    if (events[i].data.ptr == &timer_tag) {
      on_timer();
      continue;
    }
    static_cast<Connection*>(events[i].data.ptr)->handle_events(events[i].events);
  }
  run_deferred();
}

void RedisStream::on_tick(double now) {
  now_ = now;
  run_deferred();
  if (awaiting_lookup_ && state_ == State::kConnecting && now - lookup_started_ > kResolveTimeout) {
    awaiting_lookup_ = false;
    const std::string why = "cannot resolve " + wanted_host_ + ": no answer within " +
                            std::to_string(static_cast<int>(kResolveTimeout)) + " s";
    if (lookup_for_sentinel_) {
      on_sentinel_lost(/*connecting=*/true, why);
    } else {
      fail(why);
    }
  }
  if (sentinel_asking_ && sentinel_ask_->late(now)) {
    on_sentinel_lost(/*connecting=*/false, "no reply within " + std::to_string(static_cast<int>(kReplyTimeout)) +
                                               " s");
  }
  // Sentinel: the subscription kept beside the link, again after a loss.
  if (!options_.sentinels.empty() && !sentinel_subscribed_ && !sub_address_.empty() &&
      now >= sentinel_sub_retry_) {
    subscribe_sentinel();
  }
  run_deferred();
  if (state_ == State::kDown) {
    if (now >= next_attempt_) {
      ++stats_.reconnects;
      connect(now);
      run_deferred();
    }
    return;
  }
  // Our position stays fresh for the others while idle, and an appender
  // waiting for a slow relay learns when it has caught up.
  if (state_ == State::kUp && (append_waiting_ || report_again_ || now - last_report_ >= kReportInterval)) {
    report_tail(/*now=*/true);
  }
  // A reply that is late means the link is gone (SIGSTOP, partition).
  if (cmd_->late(now) || tail_->late(now)) {
    fail("no reply within " + std::to_string(static_cast<int>(kReplyTimeout)) +
         " s (is Redis paused or unreachable?)");
    drop_now();
  }
}

}  // namespace smws::redis
