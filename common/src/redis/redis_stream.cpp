// SPDX-License-Identifier: Apache-2.0
// RedisStream: hiredis's async API on an epoll set of our own. See
// redis_stream.h for the contract and docs/scale-out.md for the keys.
#include "smws/redis_stream.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "smws/host_address.h"
#include "smws/log.h"

namespace smws::redis {
namespace {

// Keys beside the stream S (all in one hash slot's worth of naming, so a
// future Redis Cluster could hold them together with a {S} tag):
//   S           the stream: entries "<seq>-0" with one field e = the event
//   S:meta      hash: epoch (random, set once), seq (the last seq given)
//   S:machines  hash: machine_id -> "<seq>\n<former state>\n<event>"
//   S:mstate    hash: machine_id -> raw JSON of its current state
//   S:pending   hash: interrupt_id -> "<seq>\n<ms>\n<interrupt event>", ms =
//               Redis's clock when it was appended (its deadline's start)
//   S:relays    hash: relay_id -> the last batch counter appended (dedupe)
//   S:morder    sorted set: machine_id -> seq of its last state_change
//   S:tails     hash: relay_id -> "<last seq its tail read> <Redis ms>"

// KEYS: S, S:meta, S:machines, S:mstate, S:pending, S:relays, S:morder, S:tails
// ARGV: epoch candidate, floor seq, maxlen, relay id, batch counter, max
//       machines, then (kind, key, state, event) per event.
// Returns {epoch, first seq, last seq, duplicate 0|1, slowest tail}: the
// lowest position a relay reported within kTailFreshMs (-1: none), for
// the flow control (append_allowance).
// S:morder (machine_id -> seq of its last state_change) bounds the machine
// hashes like a relay's own table: past max machines, the least recently
// active (lowest seq) leave both hashes.
// The tails' positions, S:tails: relay_id -> "<last seq read> <Redis ms>".
// SLOWEST(key): the lowest fresh one (-1: none); entries a minute old are
// relays gone and are removed.
#define SMWS_SLOWEST_LUA \
  "local function SLOWEST(key)\n" \
  "  local t = redis.call('TIME')\n" \
  "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
  "  local slowest = -1\n" \
  "  local all = redis.call('HGETALL', key)\n" \
  "  for j = 1, #all, 2 do\n" \
  "    local pos, ms = string.match(all[j + 1], '^(%d+) (%d+)$')\n" \
  "    if pos then\n" \
  "      local age = now - tonumber(ms)\n" \
  "      if age <= 3000 then\n" \
  "        if slowest < 0 or tonumber(pos) < slowest then slowest = tonumber(pos) end\n" \
  "      elseif age > 60000 then\n" \
  "        redis.call('HDEL', key, all[j])\n" \
  "      end\n" \
  "    end\n" \
  "  end\n" \
  "  return slowest\n" \
  "end\n"

const char* kAppendScript = SMWS_SLOWEST_LUA R"lua(
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', ARGV[2])
end
local done = tonumber(redis.call('HGET', KEYS[6], ARGV[4]) or '0')
if tonumber(ARGV[5]) <= done then return {epoch, 0, 0, 1} end
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local first = seq + 1
local max_machines = tonumber(ARGV[6])
local now_ms = nil
for i = 7, #ARGV, 4 do
  seq = seq + 1
  local kind, key, state, event = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], string.format('%d-0', seq), 'e', event)
  if kind == 'm' then
    local former = redis.call('HGET', KEYS[4], key) or ''
    redis.call('HSET', KEYS[3], key, string.format('%d', seq) .. '\n' .. former .. '\n' .. event)
    if state ~= '' then redis.call('HSET', KEYS[4], key, state) end
    redis.call('ZADD', KEYS[7], seq, key)
    if max_machines > 0 and redis.call('ZCARD', KEYS[7]) > max_machines then
      local oldest = redis.call('ZPOPMIN', KEYS[7])
      redis.call('HDEL', KEYS[3], oldest[1])
      redis.call('HDEL', KEYS[4], oldest[1])
    end
  elseif kind == 'i' then
    if not now_ms then
      local t = redis.call('TIME')
      now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    end
    redis.call('HSET', KEYS[5], key, string.format('%d', seq) .. '\n' .. now_ms .. '\n' .. event)
  end
end
redis.call('HSET', KEYS[2], 'seq', string.format('%d', seq))
return {epoch, first, seq, 0, SLOWEST(KEYS[8])}
)lua";

// KEYS: S:tails. ARGV: relay id, the last seq its tail read.
// Returns the slowest fresh tail, like the append script.
const char* kReportScript = SMWS_SLOWEST_LUA R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now))
return SLOWEST(KEYS[1])
)lua";

// KEYS: S, S:meta, S:pending. ARGV: interrupt_id, decision event, maxlen.
// Returns {epoch, seq}: seq 0 when the interrupt was not pending.
const char* kDecideScript = R"lua(
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return {'', 0} end
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return {epoch, 0} end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', ARGV[2])
return {epoch, seq}
)lua";

// KEYS: S, S:meta, S:machines, S:pending.
// ARGV: epoch candidate, floor seq, full 0|1, recent count.
// Returns {epoch, seq} or, full, {epoch, seq, machines, pending, recent,
// now ms} with the hashes as HGETALL arrays, recent newest first
// (XREVRANGE) and Redis's clock (the pending interrupts' ages are measured
// on it, so the relays' clocks need not agree).
// A Redis without our meta (new, flushed, restarted empty) gets a new epoch
// here, and its seq starts at the caller's last seq, so numbers never go
// back for the clients of the relay that finds it.
const char* kLoadScript = R"lua(
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', ARGV[2])
end
local seq = redis.call('HGET', KEYS[2], 'seq')
if ARGV[3] ~= '1' then return {epoch, seq} end
local recent = {}
if tonumber(ARGV[4]) > 0 then
  recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[4])
end
local t = redis.call('TIME')
local now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return {epoch, seq, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), recent, now_ms}
)lua";

// Our own monotonic clock: reply deadlines are measured where commands are
// sent, whichever caller's clock drives on_tick().
// An appender waiting for the tails polls the slowest position at once for
// this long, then every kWaitPoll (the stream's timerfd).
constexpr double kEagerWait = 0.05;
// The least time between two reports of a moving tail (the tick sends
// the last one of a burst).
constexpr double kReportSpacing = 0.005;
// How often an appender still waiting after kEagerWait asks again.
constexpr double kWaitPoll = 0.002;

// The read buffer each connection keeps between replies (see open_conn).
constexpr size_t kReaderKeep = 4u << 20;

double mono() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string reply_str(const redisReply* r) {
  if (!r) return {};
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR)
    return std::string(r->str, r->len);
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return {};
}

uint64_t reply_u64(const redisReply* r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer < 0 ? 0 : static_cast<uint64_t>(r->integer);
  std::string s = reply_str(r);
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// "<seq>\n<rest>" → seq, rest.
bool split_seq(const std::string& value, uint64_t* seq, std::string* rest) {
  size_t nl = value.find('\n');
  if (nl == std::string::npos) return false;
  *seq = 0;
  for (size_t i = 0; i < nl; ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
    *seq = *seq * 10 + static_cast<uint64_t>(value[i] - '0');
  }
  *rest = value.substr(nl + 1);
  return true;
}

// One stream entry reply [id, [field, value, ...]] → seq and event.
bool parse_entry(const redisReply* e, GroupSnapshot::Entry* out) {
  if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2) return false;
  if (!parse_entry_id(reply_str(e->element[0]), &out->seq)) return false;
  const redisReply* fields = e->element[1];
  if (!fields || fields->type != REDIS_REPLY_ARRAY) return false;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (reply_str(fields->element[i]) == "e") {
      out->event = reply_str(fields->element[i + 1]);
      return true;
    }
  }
  return false;
}

// The epoll tags of the lookup's eventfd and of the report timer (Conn
// pointers tag the others).
char lookup_tag;
char timer_tag;

}  // namespace


bool system_lookup(const std::string& host, std::string* address, std::string* error) {
  return lookup_host_address(host, address, error);
}

// One host name lookup, shared by the loop thread (RedisStream::lookup_)
// and the lookup thread; whichever lets go last closes the eventfd. The
// thread writes the result under mu, then signals the eventfd once.
struct RedisStream::Lookup {
  int event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::mutex mu;
  bool done = false;     // GUARDED_BY(mu)
  bool ok = false;       // GUARDED_BY(mu)
  std::string address;   // GUARDED_BY(mu)
  std::string error;     // GUARDED_BY(mu)
  ~Lookup() {
    if (event_fd >= 0) ::close(event_fd);
  }
};

// One hiredis connection and its registration in our epoll set.
struct RedisStream::Conn {
  RedisStream* owner = nullptr;
  const char* name = "";
  redisAsyncContext* ac = nullptr;
  int fd = -1;
  bool registered = false;
  bool reading = false, writing = false;
  bool handshake_done = false;
  std::deque<double> sent;  // send times of commands not yet answered

  void update() {
    if (fd < 0) return;
    epoll_event ev{};
    ev.events = (reading ? EPOLLIN : 0u) | (writing ? EPOLLOUT : 0u);
    ev.data.ptr = this;
    if (!registered) {
      if (::epoll_ctl(owner->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0) registered = true;
    } else {
      ::epoll_ctl(owner->epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    }
  }
  void unregister() {
    if (registered && fd >= 0) ::epoll_ctl(owner->epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    registered = false;
    reading = writing = false;
    fd = -1;
  }
  static void add_read(void* p) { auto* c = static_cast<Conn*>(p); c->reading = true; c->update(); }
  static void del_read(void* p) { auto* c = static_cast<Conn*>(p); c->reading = false; c->update(); }
  static void add_write(void* p) { auto* c = static_cast<Conn*>(p); c->writing = true; c->update(); }
  static void del_write(void* p) { auto* c = static_cast<Conn*>(p); c->writing = false; c->update(); }
  static void cleanup(void* p) { static_cast<Conn*>(p)->unregister(); }
};

// One command in flight; hiredis hands it back exactly once (with a null
// reply when the connection is freed first).
struct RedisStream::Request {
  enum Kind { kHandshake, kLoadMeta, kLoadFull, kTail, kAppend, kDecide, kReport } kind;
  Conn* conn = nullptr;
  std::function<void(DecideOutcome)> done;  // kDecide
  uint64_t generation = 0;                  // kTail: tail_generation_ when sent
};

RedisStream::RedisStream(StreamOptions options, Listener* listener)
    : options_(std::move(options)),
      listener_(listener),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      cmd_(std::make_unique<Conn>()),
      tail_(std::make_unique<Conn>()),
      buffer_(options_.buffer, options_.relay_id) {
  cmd_->owner = tail_->owner = this;
  cmd_->name = "commands";
  tail_->name = "tail";
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &timer_tag;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  }
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

RedisStream::~RedisStream() {
  destroying_ = true;
  // A lookup thread still running keeps its Lookup (and eventfd) alive.
  if (lookup_ && lookup_->event_fd >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lookup_->event_fd, nullptr);
  drop_now();
  if (timer_fd_ >= 0) ::close(timer_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

const char* RedisStream::append_script() { return kAppendScript; }
const char* RedisStream::decide_script() { return kDecideScript; }
const char* RedisStream::load_script() { return kLoadScript; }

StreamStats RedisStream::stats() const {
  StreamStats s = stats_;
  s.buffer_dropped = buffer_.dropped_total();
  s.buffered = buffer_.size() + (in_flight_ ? in_flight_->events.size() : 0);
  return s;
}

void RedisStream::start(double) {
  now_ = mono();
  connect(now_);
}

void RedisStream::connect(double) {
  state_ = State::kConnecting;
  drop_requested_ = false;
  if (is_numeric_host(options_.url.host)) {
    connect_to(options_.url.host);
    return;
  }
  // A name: resolved off the loop thread (on_lookup_done connects). One
  // lookup at a time: a reconnect while an old one hangs waits for it.
  awaiting_lookup_ = true;
  if (!lookup_) start_lookup();
}

void RedisStream::start_lookup() {
  auto lookup = std::make_shared<Lookup>();
  if (lookup->event_fd < 0) {
    awaiting_lookup_ = false;
    fail("cannot resolve " + options_.url.host + ": eventfd: " + std::strerror(errno));
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &lookup_tag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, lookup->event_fd, &ev) != 0) {
    awaiting_lookup_ = false;
    fail("cannot resolve " + options_.url.host + ": epoll: " + std::strerror(errno));
    return;
  }
  lookup_ = lookup;
  lookup_started_ = mono();
  LookupFn fn = options_.lookup ? options_.lookup : LookupFn(&system_lookup);
  std::string host = options_.url.host;
  try {
    // Owns only its copies and the shared Lookup: it may outlive us.
    std::thread([lookup, fn, host] {
      std::string address, error;
      bool ok = fn(host, &address, &error);
      {
        std::lock_guard<std::mutex> lock(lookup->mu);
        lookup->done = true;
        lookup->ok = ok;
        lookup->address = std::move(address);
        lookup->error = std::move(error);
      }
      uint64_t one = 1;
      (void)!::write(lookup->event_fd, &one, sizeof one);
    }).detach();
  } catch (const std::system_error& e) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lookup->event_fd, nullptr);
    lookup_.reset();
    awaiting_lookup_ = false;
    fail("cannot resolve " + options_.url.host + ": no thread: " + e.what());
  }
}

void RedisStream::on_lookup_done() {
  if (!lookup_) return;
  bool ok;
  std::string address, error;
  {
    std::lock_guard<std::mutex> lock(lookup_->mu);
    if (!lookup_->done) return;
    ok = lookup_->ok;
    address = lookup_->address;
    error = lookup_->error;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lookup_->event_fd, nullptr);
  lookup_.reset();
  // A lookup that outlived its attempt (timed out, link down since): the
  // next attempt starts a fresh one, as DNS may have changed meanwhile.
  if (!awaiting_lookup_ || state_ != State::kConnecting) return;
  awaiting_lookup_ = false;
  if (!ok) {
    fail("cannot resolve " + options_.url.host + ": " + error);
    return;
  }
  connect_to(address);
}

void RedisStream::connect_to(const std::string& address) {
  if (!open_conn(cmd_.get(), address) || !open_conn(tail_.get(), address)) return;
  // Each connection first authenticates and selects the database; the
  // command connection then loads the group's state.
  for (Conn* c : {cmd_.get(), tail_.get()}) {
    if (options_.url.has_auth()) {
      std::vector<std::string> argv{"AUTH"};
      if (!options_.url.user.empty()) argv.push_back(options_.url.user);
      argv.push_back(options_.url.password);
      send(c, new Request{Request::kHandshake, c, {}}, argv);
    }
    if (options_.url.db != 0) {
      send(c, new Request{Request::kHandshake, c, {}}, {"SELECT", std::to_string(options_.url.db)});
    }
    send(c, new Request{Request::kHandshake, c, {}}, {"PING"});
  }
  request_load(/*full=*/!loaded_once_);
}

bool RedisStream::open_conn(Conn* c, const std::string& address) {
  c->handshake_done = false;
  c->sent.clear();
  // A numeric address: hiredis's getaddrinfo answers without DNS.
  redisAsyncContext* ac = redisAsyncConnect(address.c_str(), options_.url.port);
  if (!ac) {
    fail("out of memory");
    return false;
  }
  if (ac->err) {
    std::string why = ac->errstr;
    redisAsyncFree(ac);
    fail("cannot connect to " + options_.url.display() + ": " + why);
    return false;
  }
  // hiredis frees its read buffer whenever it is empty and larger than
  // maxbuf (16 KiB by default), so every tail reply of ~1000 entries grew
  // it again from nothing (measured: a tenth of a group relay's time in
  // malloc). A buffer up to kReaderKeep is kept.
  if (ac->c.reader) ac->c.reader->maxbuf = kReaderKeep;
  c->ac = ac;
  c->fd = ac->c.fd;
  ac->data = c;
  ac->ev.data = c;
  ac->ev.addRead = &Conn::add_read;
  ac->ev.delRead = &Conn::del_read;
  ac->ev.addWrite = &Conn::add_write;
  ac->ev.delWrite = &Conn::del_write;
  ac->ev.cleanup = &Conn::cleanup;
  redisAsyncSetConnectCallback(ac, &RedisStream::on_connect_cb);
  redisAsyncSetDisconnectCallback(ac, &RedisStream::on_disconnect_cb);
  return true;
}

void RedisStream::send(Conn* c, Request* req, const std::vector<std::string>& argv) {
  if (!c->ac) {
    // Not connected: answer at once, as a lost connection would.
    std::unique_ptr<Request> owned(req);
    handle_reply(owned.get(), nullptr);
    return;
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  c->sent.push_back(mono());
  if (redisAsyncCommandArgv(c->ac, &RedisStream::on_reply_cb, req, static_cast<int>(args.size()),
                            args.data(), lens.data()) != REDIS_OK) {
    c->sent.pop_back();
    std::unique_ptr<Request> owned(req);
    handle_reply(owned.get(), nullptr);
  }
}

void RedisStream::on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
  std::unique_ptr<Request> req(static_cast<Request*>(privdata));
  auto* c = static_cast<Conn*>(ac->data);
  if (!c || !c->owner) return;
  RedisStream* self = c->owner;
  if (!c->sent.empty()) c->sent.pop_front();
  if (self->destroying_) {
    if (req->done) req->done(DecideOutcome::kUnavailable);
    return;
  }
  self->in_callback_ = true;
  self->handle_reply(req.get(), static_cast<redisReply*>(reply));
  self->in_callback_ = false;
}

void RedisStream::on_connect_cb(const redisAsyncContext* ac, int status) {
  auto* c = static_cast<Conn*>(ac->data);
  if (!c || status == REDIS_OK) return;
  // hiredis frees the context after this returns.
  std::string why = ac->errstr;
  c->ac = nullptr;
  c->unregister();
  c->owner->fail("cannot connect to " + c->owner->options_.url.display() + ": " + why);
}

void RedisStream::on_disconnect_cb(const redisAsyncContext* ac, int status) {
  auto* c = static_cast<Conn*>(ac->data);
  if (!c) return;
  std::string why = status == REDIS_OK ? "closed" : ac->errstr;
  c->ac = nullptr;
  c->unregister();
  if (!c->owner->destroying_) c->owner->fail(std::string("connection lost (") + c->name + "): " + why);
}

void RedisStream::fail(const std::string& why) {
  if (destroying_) return;
  if (state_ != State::kDown) {
    if (!down_logged_) {
      log::warn("redis: " + why + "; retrying (events are buffered, up to " +
                std::to_string(options_.buffer) + ")");
      down_logged_ = true;
    } else {
      log::note(1, "redis: " + why);
    }
    bool was_up = state_ == State::kUp;
    state_ = State::kDown;
    down_reason_ = why;
    next_attempt_ = now_ + backoff_;
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    if (was_up) listener_->on_link(false);
  }
  drop_requested_ = true;
}

void RedisStream::drop_now() {
  drop_requested_ = false;
  tail_in_flight_ = false;
  append_outstanding_ = false;
  for (Conn* c : {cmd_.get(), tail_.get()}) {
    if (redisAsyncContext* ac = c->ac) {
      c->ac = nullptr;
      // Pending callbacks run now with a null reply (and must not recurse
      // into a second free): ac->data still points at c, c->ac is null.
      redisAsyncFree(ac);
    }
    c->unregister();
    c->sent.clear();
  }
}

void RedisStream::handle_reply(Request* req, redisReply* reply) {
  if (!reply) {
    // The connection went away before the answer. A decide may or may not
    // have been applied: the tail shows it if it was.
    if (req->done) req->done(DecideOutcome::kUnavailable);
    if (req->kind == Request::kTail) tail_in_flight_ = false;
    if (req->kind == Request::kAppend) append_outstanding_ = false;  // resent on reconnect
    if (req->kind == Request::kReport) report_in_flight_ = false;
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR && req->kind != Request::kDecide) {
    std::string msg = reply_str(reply);
    if (req->kind == Request::kHandshake &&
        (msg.rfind("WRONGPASS", 0) == 0 || msg.rfind("NOAUTH", 0) == 0 ||
         msg.find("AUTH") != std::string::npos || msg.find("password") != std::string::npos)) {
      ++stats_.auth_failures;
      if (!down_logged_) log::error("redis: authentication failed at " + options_.url.display() +
                                    ": " + msg + "; retrying");
      down_logged_ = true;
      fail("authentication failed: " + msg);
    } else {
      fail("refused: " + msg);
    }
    return;
  }
  switch (req->kind) {
    case Request::kHandshake:
      req->conn->handshake_done = true;
      return;
    case Request::kLoadMeta:
    case Request::kLoadFull:
      on_load_reply(reply, req->kind == Request::kLoadFull);
      return;
    case Request::kTail:
      tail_in_flight_ = false;
      // A load since this XREAD was sent moved the position: its entries
      // are relative to the old one.
      if (req->generation != tail_generation_) {
        tail();
        return;
      }
      on_tail_reply(reply);
      return;
    case Request::kAppend:
      append_outstanding_ = false;
      on_append_reply(reply);
      return;
    case Request::kReport:
      report_in_flight_ = false;
      slowest_tail_ = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
      if (append_waiting_) flush();
      // Still waiting for a slower relay: ask again at once for a while
      // (it is usually a read or two behind), then every kWaitPoll.
      if (append_waiting_ && mono() - wait_started_ < kEagerWait) {
        report_tail(/*now=*/true);
      } else if (append_waiting_) {
        arm_timer(kWaitPoll);
      } else if (report_again_) {
        report_tail();
      }
      return;
    case Request::kDecide: {
      if (reply->type == REDIS_REPLY_ERROR) {
        log::warn("redis: decide refused: " + reply_str(reply));
        req->done(DecideOutcome::kUnavailable);
        return;
      }
      bool won = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
                 reply_u64(reply->element[1]) > 0;
      req->done(won ? DecideOutcome::kWon : DecideOutcome::kNotPending);
      return;
    }
  }
}

void RedisStream::request_load(bool full) {
  if (full) ++tail_generation_;
  const std::string& s = options_.stream;
  std::vector<std::string> argv{"EVAL",         kLoadScript,
                                "4",            s,
                                s + ":meta",    s + ":machines",
                                s + ":pending", next_epoch_candidate(),
                                std::to_string(tail_pos_), full ? "1" : "0",
                                std::to_string(options_.load_recent)};
  send(cmd_.get(), new Request{full ? Request::kLoadFull : Request::kLoadMeta, cmd_.get(), {}}, argv);
}

void RedisStream::on_load_reply(redisReply* reply, bool full) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
    fail("unexpected reply to the load script");
    return;
  }
  std::string epoch = reply_str(reply->element[0]);
  uint64_t seq = reply_u64(reply->element[1]);
  if (!full) {
    // A reconnect: the same epoch means the tail resumes where it was (a
    // hole, if entries were trimmed meanwhile, makes it resync); another
    // epoch needs the whole state.
    if (epoch != epoch_) {
      ++stats_.resyncs;
      request_load(true);
      return;
    }
    became_up();
    return;
  }
  if (reply->elements < 5) {
    fail("unexpected reply to the load script");
    return;
  }
  GroupSnapshot snap;
  snap.epoch = epoch;
  snap.last_seq = seq;
  const redisReply* machines = reply->element[2];
  for (size_t i = 0; machines && i + 1 < machines->elements; i += 2) {
    std::string value = reply_str(machines->element[i + 1]);
    StoredMachine m;
    std::string rest;
    if (!split_seq(value, &m.seq, &rest)) continue;
    size_t nl = rest.find('\n');
    if (nl == std::string::npos) continue;
    m.former_state = rest.substr(0, nl);
    m.event = rest.substr(nl + 1);
    snap.machines.push_back(std::move(m));
  }
  const redisReply* pending = reply->element[3];
  const uint64_t now_ms = reply->elements >= 6 ? reply_u64(reply->element[5]) : 0;
  std::vector<std::pair<uint64_t, GroupSnapshot::Pending>> ordered;
  for (size_t i = 0; pending && i + 1 < pending->elements; i += 2) {
    uint64_t s = 0, appended_ms = 0;
    std::string rest;
    if (!split_seq(reply_str(pending->element[i + 1]), &s, &rest)) continue;
    GroupSnapshot::Pending p;
    // "<ms>\n<event>"; an event is an object, so a value without the ms
    // line (written before it existed) starts with '{'.
    if (!rest.empty() && rest[0] != '{') {
      if (!split_seq(rest, &appended_ms, &p.event)) continue;
      if (now_ms > appended_ms) p.age_s = static_cast<double>(now_ms - appended_ms) / 1000.0;
    } else {
      p.event = std::move(rest);
    }
    ordered.emplace_back(s, std::move(p));
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& entry : ordered) snap.pending.push_back(std::move(entry.second));
  const redisReply* recent = reply->element[4];
  for (size_t i = recent ? recent->elements : 0; i-- > 0;) {
    GroupSnapshot::Entry e;
    if (parse_entry(recent->element[i], &e) && e.seq <= seq) snap.recent.push_back(std::move(e));
  }
  ++tail_generation_;
  const bool first = !loaded_once_;
  if (!first) ++stats_.resyncs;
  loaded_once_ = true;
  epoch_ = epoch;
  tail_pos_ = seq;
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
                                                                       options_.url.display());
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

void RedisStream::tail() {
  if (state_ != State::kUp || tail_in_flight_ || !tail_->ac) return;
  tail_in_flight_ = true;
  send(tail_.get(), new Request{Request::kTail, tail_.get(), {}, tail_generation_},
       {"XREAD", "COUNT", std::to_string(kTailCount), "BLOCK", std::to_string(kTailBlockMs),
        "STREAMS", options_.stream, std::to_string(tail_pos_) + "-0"});
}

void RedisStream::on_tail_reply(redisReply* reply) {
  if (reply->type == REDIS_REPLY_NIL) {
    tail();
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
      reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements < 2) {
    fail("unexpected reply to XREAD");
    return;
  }
  const redisReply* list = reply->element[0]->element[1];
  std::vector<GroupSnapshot::Entry> entries;
  entries.reserve(list->elements);
  bool hole = false;
  for (size_t i = 0; i < list->elements; ++i) {
    GroupSnapshot::Entry e;
    if (!parse_entry(list->element[i], &e)) {
      log::warn("redis: stream " + options_.stream + ": skipping an entry we did not write");
      continue;
    }
    uint64_t last = entries.empty() ? tail_pos_ : entries.back().seq;
    if (next_tail_step(last, e.seq) == TailStep::kResync) {
      hole = true;
      break;
    }
    entries.push_back(std::move(e));
  }
  if (!entries.empty()) {
    tail_pos_ = entries.back().seq;
    stats_.tailed += entries.size();
    listener_->on_entries(entries);
    report_tail();
  }
  if (append_waiting_) flush();
  if (hole) {
    // Trimmed before we read it, or another epoch: the whole state again.
    log::warn("redis: stream " + options_.stream + " has a hole after seq " +
              std::to_string(tail_pos_) + ": reloading the group's state");
    request_load(true);
    return;
  }
  tail();
}

void RedisStream::report_tail(bool now) {
  if (state_ != State::kUp || !cmd_->ac) return;
  // At most one in flight, and (unless asked now) one per kReportSpacing:
  // a report per tail read would double Redis's calls at a low event rate.
  const double t = mono();
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
  send(cmd_.get(), new Request{Request::kReport, cmd_.get(), {}},
       {"EVAL", kReportScript, "1", options_.stream + ":tails", options_.relay_id,
        std::to_string(tail_pos_)});
}

std::string RedisStream::next_epoch_candidate() {
  // Fresh for every call: a Redis that lost its data must never get back
  // the epoch it had, even from the relay that set that one.
  return options_.epoch_candidate + "." + std::to_string(++candidates_);
}

std::vector<std::string> RedisStream::keys_for_append() const {
  const std::string& s = options_.stream;
  return {s,           s + ":meta",   s + ":machines", s + ":mstate",
          s + ":pending", s + ":relays", s + ":morder",   s + ":tails"};
}

bool RedisStream::append(Outgoing event) { return buffer_.push(std::move(event)); }

void RedisStream::flush() {
  // One batch in flight at a time keeps the group's order of this relay's
  // events without relying on pipelined scripts after a reconnect.
  if (state_ != State::kUp || !cmd_->ac || append_outstanding_) return;
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
        wait_started_ = mono();
      }
      append_waiting_ = true;
      return;
    }
    append_waiting_ = false;
    in_flight_ = std::make_unique<AppendBuffer::Batch>(buffer_.take(allowed));
  }
  std::vector<std::string> argv{"EVAL", kAppendScript, "8"};
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
  send(cmd_.get(), new Request{Request::kAppend, cmd_.get(), {}}, argv);
}

void RedisStream::on_append_reply(redisReply* reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 || !in_flight_) {
    fail("unexpected reply to the append script");
    return;
  }
  std::string epoch = reply_str(reply->element[0]);
  if (reply_u64(reply->element[3]) == 1) {
    ++stats_.duplicates;
  } else {
    stats_.appended += in_flight_->events.size();
    appended_seq_ = reply_u64(reply->element[2]);
    if (reply->elements >= 5 && reply->element[4]->type == REDIS_REPLY_INTEGER) {
      slowest_tail_ = reply->element[4]->integer;
    }
  }
  ++stats_.append_batches;
  in_flight_.reset();
  if (epoch != epoch_) {
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
  send(cmd_.get(), new Request{Request::kDecide, cmd_.get(), std::move(done)},
       {"EVAL", kDecideScript, "3", s, s + ":meta", s + ":pending", interrupt_id, decision,
        std::to_string(options_.history)});
}

void RedisStream::on_readable() {
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
    auto* c = static_cast<Conn*>(events[i].data.ptr);
    if (c->ac && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(c->ac);
    if (c->ac && (events[i].events & EPOLLOUT)) redisAsyncHandleWrite(c->ac);
  }
  if (drop_requested_) drop_now();
}

void RedisStream::on_tick(double) {
  const double now = mono();
  now_ = now;
  if (drop_requested_) drop_now();
  if (awaiting_lookup_ && state_ == State::kConnecting && now - lookup_started_ > kResolveTimeout) {
    awaiting_lookup_ = false;
    fail("cannot resolve " + options_.url.host + ": no answer within " +
         std::to_string(static_cast<int>(kResolveTimeout)) + " s");
  }
  if (state_ == State::kDown) {
    if (now >= next_attempt_) {
      ++stats_.reconnects;
      connect(now);
      if (drop_requested_) drop_now();
    }
    return;
  }
  // A reply that is late means the link is gone (SIGSTOP, partition).
  auto late = [&](const Conn& c, double allowed) {
    return !c.sent.empty() && now - c.sent.front() > allowed;
  };
  // Our position stays fresh for the others while idle, and an appender
  // waiting for a slow relay learns when it has caught up.
  if (state_ == State::kUp &&
      (append_waiting_ || report_again_ || now - last_report_ >= kReportInterval)) {
    report_tail(/*now=*/true);
  }
  if (late(*cmd_, kReplyTimeout) || late(*tail_, kTailBlockMs / 1000.0 + kReplyTimeout)) {
    fail("no reply within " + std::to_string(static_cast<int>(kReplyTimeout)) +
         " s (is Redis paused or unreachable?)");
    drop_now();
  }
}

}  // namespace smws::redis
