// SPDX-License-Identifier: Apache-2.0
// RedisStream and its Lua scripts against a real redis-server (Debian's),
// one per test case, on a free port with a temp dir.
#include <poll.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>

#include "redis_test_server.h"
#include "smws/redis_stream.h"

using namespace smws::redis;
using smws::test::RedisServer;

namespace {

// Runs the scripts the way RedisStream does, on a blocking connection.
redisReply* eval(redisContext* c, const char* script, const std::vector<std::string>& keys,
                 const std::vector<std::string>& args) {
  std::vector<std::string> argv{"EVAL", script, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<const char*> p;
  std::vector<size_t> l;
  for (auto& a : argv) {
    p.push_back(a.data());
    l.push_back(a.size());
  }
  return static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(p.size()), p.data(), l.data()));
}

std::vector<std::string> append_keys() {
  return {"s", "s:meta", "s:machines", "s:mstate", "s:pending", "s:relays", "s:morder", "s:tails"};
}

std::string cmd_str(redisContext* c, const char* fmt, const char* a, const char* b = nullptr) {
  auto* r = static_cast<redisReply*>(b ? redisCommand(c, fmt, a, b) : redisCommand(c, fmt, a));
  std::string out = r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
  if (r && r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
  freeReplyObject(r);
  return out;
}

struct Recorder : RedisStream::Listener {
  std::vector<GroupSnapshot::Entry> entries;
  std::vector<GroupSnapshot> loads;
  bool up = false;
  int downs = 0;
  void on_loaded(const GroupSnapshot& s, bool) override { loads.push_back(s); }
  void on_entries(const std::vector<GroupSnapshot::Entry>& e) override {
    entries.insert(entries.end(), e.begin(), e.end());
  }
  void on_link(bool u) override {
    up = u;
    if (!u) ++downs;
  }
};

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Drives the streams' I/O until done() or the timeout; true when done.
bool drive(std::vector<RedisStream*> streams, const std::function<bool()>& done, double seconds) {
  const double deadline = now_s() + seconds;
  while (!done()) {
    if (now_s() > deadline) return false;
    std::vector<pollfd> fds;
    for (auto* s : streams) fds.push_back({s->fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 20);
    for (size_t i = 0; i < streams.size(); ++i) {
      if (fds[i].revents) streams[i]->on_readable();
      streams[i]->on_tick(now_s());
    }
  }
  return true;
}

StreamOptions options_for(const RedisServer& server, const std::string& relay) {
  StreamOptions o;
  REQUIRE(parse_url(server.url(), &o.url).ok());
  o.stream = "g";
  o.relay_id = relay;
  o.epoch_candidate = "epoch-" + relay;
  o.load_recent = 100;
  return o;
}

Outgoing plain(const std::string& text) {
  Outgoing o;
  o.event = text;
  return o;
}

}  // namespace

TEST_CASE("the append script numbers a batch densely, sets the epoch once and drops a resent batch",
          "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  auto* r = eval(c, RedisStream::append_script(), append_keys(),
                 {"E1", "0", "1000", "relayA", "1", "100000", "e", "", "", "{\"type\":\"a\"}", "m", "w1",
                  "\"busy\"", "{\"type\":\"state_change\",\"machine_id\":\"w1\",\"state\":\"busy\"}"});
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  CHECK(std::string(r->element[0]->str) == "E1");
  CHECK(r->element[1]->integer == 1);
  CHECK(r->element[2]->integer == 2);
  CHECK(r->element[3]->integer == 0);
  freeReplyObject(r);
  // The same counter again (a retry after a lost reply): nothing appended.
  r = eval(c, RedisStream::append_script(), append_keys(),
           {"E2", "0", "1000", "relayA", "1", "100000", "e", "", "", "{\"type\":\"a\"}"});
  CHECK(std::string(r->element[0]->str) == "E1");  // the epoch is set once
  CHECK(r->element[3]->integer == 1);
  freeReplyObject(r);
  // Another relay's batch continues the numbers.
  r = eval(c, RedisStream::append_script(), append_keys(),
           {"E3", "0", "1000", "relayB", "1", "100000", "m", "w1", "\"idle\"",
            "{\"type\":\"state_change\",\"machine_id\":\"w1\",\"state\":\"idle\"}"});
  CHECK(r->element[1]->integer == 3);
  freeReplyObject(r);
  CHECK(cmd_str(c, "XLEN %s", "s") == "3");
  auto* ids = static_cast<redisReply*>(redisCommand(c, "XRANGE s - +"));
  REQUIRE(ids->elements == 3);
  CHECK(std::string(ids->element[0]->element[0]->str) == "1-0");
  CHECK(std::string(ids->element[2]->element[0]->str) == "3-0");
  freeReplyObject(ids);
  CHECK(cmd_str(c, "HGET %s %s", "s:meta", "seq") == "3");
  // The machine keeps its last event and the state before it.
  std::string m = cmd_str(c, "HGET %s %s", "s:machines", "w1");
  CHECK(m == "3\n\"busy\"\n{\"type\":\"state_change\",\"machine_id\":\"w1\",\"state\":\"idle\"}");
  redisFree(c);
}

TEST_CASE("the machines hash keeps the most recently active, evicting like a relay's table",
          "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  auto change = [](const std::string& id) {
    return std::vector<std::string>{"m", id, "\"s\"",
                                    "{\"type\":\"state_change\",\"machine_id\":\"" + id +
                                        "\",\"state\":\"s\"}"};
  };
  int counter = 0;
  auto append = [&](std::vector<std::string> ids) {
    std::vector<std::string> args{"E", "0", "1000", "r", std::to_string(++counter), "3"};
    for (auto& id : ids) {
      auto ev = change(id);
      args.insert(args.end(), ev.begin(), ev.end());
    }
    freeReplyObject(eval(c, RedisStream::append_script(), append_keys(), args));
  };
  append({"a", "b", "c"});
  append({"a"});       // a is now the most recent: b is the oldest
  append({"d", "e"});  // two more: b, then c, leave
  CHECK(cmd_str(c, "HLEN %s", "s:machines") == "3");
  CHECK(cmd_str(c, "HLEN %s", "s:mstate") == "3");
  for (const char* gone : {"b", "c"}) CHECK(cmd_str(c, "HEXISTS %s %s", "s:machines", gone) == "0");
  for (const char* kept : {"a", "d", "e"}) CHECK(cmd_str(c, "HEXISTS %s %s", "s:machines", kept) == "1");
  redisFree(c);
}

TEST_CASE("the stream is trimmed to about --redis-history entries", "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  for (int batch = 1; batch <= 30; ++batch) {
    std::vector<std::string> args{"E", "0", "100", "r", std::to_string(batch), "100000"};
    for (int i = 0; i < 20; ++i) args.insert(args.end(), {"e", "", "", "{\"type\":\"x\"}"});
    freeReplyObject(eval(c, RedisStream::append_script(), append_keys(), args));
  }
  long len = std::stol(cmd_str(c, "XLEN %s", "s"));
  CHECK(len >= 100);
  CHECK(len < 300);  // "~": whole macro nodes, but bounded
  CHECK(cmd_str(c, "HGET %s %s", "s:meta", "seq") == "600");
  redisFree(c);
}

TEST_CASE("the decide script lets exactly one decision win and appends it", "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  freeReplyObject(eval(c, RedisStream::append_script(), append_keys(),
                       {"E", "0", "1000", "r", "1", "100000", "i", "i-1", "",
                        "{\"type\":\"interrupt\",\"interrupt_id\":\"i-1\"}"}));
  CHECK(cmd_str(c, "HEXISTS %s %s", "s:pending", "i-1") == "1");
  {
    // "<seq>\n<ms>\n<event>": the time its deadline counts from.
    std::string v = cmd_str(c, "HGET %s %s", "s:pending", "i-1");
    auto first = v.find('\n'), second = v.find('\n', first + 1);
    REQUIRE(second != std::string::npos);
    CHECK(v.substr(0, first) == "1");
    CHECK(std::stoll(v.substr(first + 1, second - first - 1)) > 1600000000000LL);
    CHECK(v.substr(second + 1) == "{\"type\":\"interrupt\",\"interrupt_id\":\"i-1\"}");
  }
  std::vector<std::string> keys{"s", "s:meta", "s:pending"};
  auto* first = eval(c, RedisStream::decide_script(), keys,
                     {"i-1", "{\"type\":\"decision\",\"interrupt_id\":\"i-1\"}", "1000"});
  auto* second = eval(c, RedisStream::decide_script(), keys,
                      {"i-1", "{\"type\":\"decision\",\"interrupt_id\":\"i-1\",\"n\":2}", "1000"});
  CHECK(first->element[1]->integer == 2);   // appended as seq 2
  CHECK(second->element[1]->integer == 0);  // not pending
  freeReplyObject(first);
  freeReplyObject(second);
  CHECK(cmd_str(c, "XLEN %s", "s") == "2");
  CHECK(cmd_str(c, "HEXISTS %s %s", "s:pending", "i-1") == "0");
  redisFree(c);
}

TEST_CASE("the load script sets a new epoch on an empty Redis, starting at the caller's seq",
          "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  std::vector<std::string> keys{"s", "s:meta", "s:machines", "s:pending"};
  auto* r = eval(c, RedisStream::load_script(), keys, {"NEW", "57", "1", "10"});
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  REQUIRE(r->elements == 7);  // ... machines, pending, recent, Redis's clock in ms, the epoch's start
  CHECK(std::string(r->element[0]->str) == "NEW");
  CHECK(std::string(r->element[1]->str) == "57");
  freeReplyObject(r);
  r = eval(c, RedisStream::append_script(), append_keys(),
           {"OTHER", "0", "1000", "r", "1", "100000", "e", "", "", "{\"type\":\"a\"}"});
  CHECK(std::string(r->element[0]->str) == "NEW");
  CHECK(r->element[1]->integer == 58);
  freeReplyObject(r);
  redisFree(c);
}

TEST_CASE("two streams on one Redis see both relays' events in one order, seq 1..N", "[redis]") {
  RedisServer server;
  Recorder ra, rb;
  RedisStream a(options_for(server, "A"), &ra);
  RedisStream b(options_for(server, "B"), &rb);
  a.start(now_s());
  b.start(now_s());
  REQUIRE(drive({&a, &b}, [&] { return ra.up && rb.up; }, 10));
  CHECK(ra.loads.size() == 1);
  CHECK(a.epoch() == b.epoch());
  for (int i = 0; i < 50; ++i) {
    a.append(plain("{\"type\":\"a\",\"n\":" + std::to_string(i) + "}"));
    b.append(plain("{\"type\":\"b\",\"n\":" + std::to_string(i) + "}"));
    if (i % 7 == 0) {
      a.flush();
      b.flush();
    }
  }
  a.flush();
  b.flush();
  REQUIRE(drive({&a, &b}, [&] { return ra.entries.size() == 100 && rb.entries.size() == 100; }, 10));
  for (size_t i = 0; i < 100; ++i) {
    CHECK(ra.entries[i].seq == i + 1);
    CHECK(ra.entries[i].event == rb.entries[i].event);
  }
  // Each relay's own events keep their order.
  int last_a = -1;
  for (auto& e : ra.entries) {
    auto j = nlohmann::json::parse(e.event);
    if (j["type"] == "a") {
      CHECK(j["n"].get<int>() == last_a + 1);
      last_a = j["n"];
    }
  }
  CHECK(a.stats().appended == 50);
}

TEST_CASE("a paused Redis takes the link down, events wait and arrive in order after SIGCONT",
          "[redis]") {
  RedisServer server;
  Recorder ra;
  RedisStream a(options_for(server, "A"), &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  ::kill(server.pid(), SIGSTOP);
  REQUIRE(drive({&a}, [&] { return !ra.up; }, 10));
  CHECK_FALSE(a.down_reason().empty());
  for (int i = 0; i < 20; ++i) a.append(plain("{\"type\":\"x\",\"n\":" + std::to_string(i) + "}"));
  a.flush();
  CHECK(a.stats().buffered == 20);
  ::kill(server.pid(), SIGCONT);
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 20; }, 15));
  for (size_t i = 0; i < 20; ++i) {
    CHECK(ra.entries[i].seq == i + 1);
    CHECK(nlohmann::json::parse(ra.entries[i].event)["n"] == i);
  }
  CHECK(a.stats().reconnects >= 1);
}

TEST_CASE("a wrong password is counted, keeps the link down and is retried", "[redis]") {
  RedisServer server({"--requirepass", "right"});
  Recorder ra;
  StreamOptions o = options_for(server, "A");
  REQUIRE(parse_url("redis://:wrong@127.0.0.1:" + std::to_string(server.port()), &o.url).ok());
  RedisStream a(o, &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return a.stats().auth_failures >= 2; }, 10));
  CHECK_FALSE(a.up());
  CHECK(a.down_reason().find("authentication failed") != std::string::npos);
}

TEST_CASE("the right password gets the link up", "[redis]") {
  RedisServer server({"--requirepass", "right"});
  Recorder ra;
  StreamOptions o = options_for(server, "A");
  REQUIRE(parse_url("redis://:right@127.0.0.1:" + std::to_string(server.port()), &o.url).ok());
  RedisStream a(o, &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
}

TEST_CASE("a Redis restarted empty is a new epoch and the stream reloads", "[redis]") {
  auto server = std::make_unique<RedisServer>();
  const uint16_t port = server->port();
  Recorder ra;
  RedisStream a(options_for(*server, "A"), &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  a.append(plain("{\"type\":\"x\"}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 1; }, 10));
  std::string old_epoch = a.epoch();
  redisContext* c = server->client();
  freeReplyObject(redisCommand(c, "FLUSHALL"));
  redisFree(c);
  // A second relay finds no epoch and sets one of its own.
  Recorder rb;
  RedisStream b(options_for(*server, "B"), &rb);
  b.start(now_s());
  REQUIRE(drive({&a, &b}, [&] { return rb.up; }, 10));
  CHECK(b.epoch().rfind("epoch-B.", 0) == 0);
  a.append(plain("{\"type\":\"y\"}"));
  a.flush();
  // A's append reply names epoch-B: A reloads, and the new state holds "y".
  REQUIRE(drive({&a, &b}, [&] { return ra.loads.size() == 2; }, 10));
  REQUIRE_FALSE(ra.loads.back().recent.empty());
  CHECK(ra.loads.back().recent.back().event == "{\"type\":\"y\"}");
  CHECK(ra.loads.back().epoch == b.epoch());
  CHECK(a.epoch() == b.epoch());
  CHECK(a.epoch() != old_epoch);
  CHECK(a.stats().resyncs >= 1);
  (void)port;
}

TEST_CASE("a host name resolves off the loop thread, and a slow lookup does not stall it", "[redis]") {
  RedisServer server;
  // The real resolver: localhost.
  {
    Recorder ra;
    StreamOptions o = options_for(server, "A");
    REQUIRE(parse_url("redis://localhost:" + std::to_string(server.port()), &o.url).ok());
    RedisStream a(o, &ra);
    a.start(now_s());
    REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  }
  // A lookup that answers only when the test lets it: meanwhile the caller's
  // loop keeps turning (start() and on_tick() return), and it is not up.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread::id lookup_thread;
  Recorder rb;
  StreamOptions o = options_for(server, "B");
  REQUIRE(parse_url("redis://slow.invalid:" + std::to_string(server.port()), &o.url).ok());
  o.lookup = [&](const std::string& host, std::string* address) {
    std::unique_lock<std::mutex> lock(mu);
    lookup_thread = std::this_thread::get_id();
    if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; })) {
      return smws::Status::Error(smws::Status::kUnavailable, "never released");
    }
    CHECK(host == "slow.invalid");
    *address = "127.0.0.1";
    return smws::Status::Ok();
  };
  RedisStream b(o, &rb);
  b.start(now_s());
  int turns = 0;
  CHECK_FALSE(drive({&b}, [&] { return ++turns > 2 && rb.up; }, 0.3));
  CHECK(turns > 2);
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(lookup_thread != std::this_thread::get_id());
    release = true;
  }
  cv.notify_all();
  REQUIRE(drive({&b}, [&] { return rb.up; }, 10));
}

TEST_CASE("a name that does not resolve takes the link down with the reason", "[redis]") {
  Recorder ra;
  StreamOptions o;
  REQUIRE(parse_url("redis://nowhere.invalid:6379", &o.url).ok());
  o.relay_id = "A";
  o.epoch_candidate = "e";
  o.lookup = [](const std::string& host, std::string*) {
    return smws::Status::Error(smws::Status::kUnavailable, "cannot resolve " + host + ": Name or service not known");
  };
  RedisStream a(o, &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return a.down_reason().find("cannot resolve nowhere.invalid") != std::string::npos; }, 5));
  CHECK_FALSE(a.up());
}

TEST_CASE("a pending interrupt is loaded with its age on Redis's clock", "[redis]") {
  RedisServer server;
  redisContext* c = server.client();
  auto* t = static_cast<redisReply*>(redisCommand(c, "TIME"));
  REQUIRE(t->type == REDIS_REPLY_ARRAY);
  const long long now_ms = std::stoll(t->element[0]->str) * 1000 + std::stoll(t->element[1]->str) / 1000;
  freeReplyObject(t);
  // Appended a minute ago (as the append script writes it), and one in the
  // format without the time, which loads with age 0.
  const std::string old_value = "2\n" + std::to_string(now_ms - 60000) +
                                "\n{\"type\":\"interrupt\",\"interrupt_id\":\"i-old\"}";
  freeReplyObject(redisCommand(c, "HSET g:meta epoch E seq 3"));
  freeReplyObject(redisCommand(c, "HSET g:pending i-old %s", old_value.c_str()));
  freeReplyObject(redisCommand(c, "HSET g:pending i-plain %s",
                               "3\n{\"type\":\"interrupt\",\"interrupt_id\":\"i-plain\"}"));
  redisFree(c);
  Recorder ra;
  RedisStream a(options_for(server, "A"), &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  REQUIRE(ra.loads.size() == 1);
  const auto& pending = ra.loads[0].pending;
  REQUIRE(pending.size() == 2);
  CHECK(nlohmann::json::parse(pending[0].event)["interrupt_id"] == "i-old");
  CHECK(pending[0].age_s >= 60.0);
  CHECK(pending[0].age_s < 3600.0);
  CHECK(nlohmann::json::parse(pending[1].event)["interrupt_id"] == "i-plain");
  CHECK(pending[1].age_s == 0.0);
}

TEST_CASE("an appender waits for the slowest relay's tail, so no relay misses trimmed entries",
          "[redis]") {
  RedisServer server;
  Recorder ra, rb;
  StreamOptions oa = options_for(server, "A"), ob = options_for(server, "B");
  oa.history = ob.history = 100;
  RedisStream a(oa, &ra);
  RedisStream b(ob, &rb);
  a.start(now_s());
  b.start(now_s());
  REQUIRE(drive({&a, &b}, [&] { return ra.up && rb.up; }, 10));
  // B stops reading (its loop is not driven) while A appends 3x the history.
  for (int i = 0; i < 300; ++i) a.append(plain("{\"type\":\"x\",\"n\":" + std::to_string(i) + "}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return a.stats().append_waits > 0; }, 10));
  CHECK(a.stats().appended <= 50);
  // B reads again: A goes on as B catches up, and B sees every entry.
  REQUIRE(drive({&a, &b}, [&] { return rb.entries.size() >= 300 && ra.entries.size() >= 300; }, 20));
  CHECK(b.stats().resyncs == 0);
  for (size_t i = 0; i < rb.entries.size(); ++i) CHECK(rb.entries[i].seq == i + 1);
}

// ------------------------------------------------------------ the epoch rule (issue 22)

namespace {

std::vector<std::string> load_keys() { return {"s", "s:meta", "s:machines", "s:pending"}; }

std::string meta(redisContext* c, const char* field) { return cmd_str(c, "HGET s:meta %s", field); }

}  // namespace

TEST_CASE("the load script keeps the epoch when Redis holds the caller's last entry", "[redis][epoch]") {
  RedisServer server;
  redisContext* c = server.client();
  freeReplyObject(redisCommand(c, "HSET s:meta epoch E seq 3 start 0"));
  freeReplyObject(redisCommand(c, "XADD s 3-0 e %s", "{\"n\":3}"));
  auto* r = eval(c, RedisStream::load_script(), load_keys(), {"NEW", "3", "0", "0", "E", "{\"n\":3}"});
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  CHECK(std::string(r->element[0]->str) == "E");
  CHECK(std::string(r->element[1]->str) == "3");
  freeReplyObject(r);
  // Trimmed past the caller (no entry with its number, the seq beyond it):
  // not lost, the same epoch (the tail's hole reloads).
  freeReplyObject(redisCommand(c, "HSET s:meta seq 50"));
  r = eval(c, RedisStream::load_script(), load_keys(), {"NEW", "2", "0", "0", "E", "{\"n\":2}"});
  CHECK(std::string(r->element[0]->str) == "E");
  freeReplyObject(r);
  redisFree(c);
}

TEST_CASE("a Redis without the caller's last entry (a failover lost it) is a new epoch from the higher seq",
          "[redis][epoch]") {
  RedisServer server;
  redisContext* c = server.client();
  // The promoted replica had only up to seq 2; the caller saw 3.
  freeReplyObject(redisCommand(c, "HSET s:meta epoch E seq 2 start 0"));
  freeReplyObject(redisCommand(c, "XADD s 2-0 e %s", "{\"n\":2}"));
  auto* r = eval(c, RedisStream::load_script(), load_keys(), {"NEW1", "3", "0", "0", "E", "{\"n\":3}"});
  CHECK(std::string(r->element[0]->str) == "NEW1");
  CHECK(std::string(r->element[1]->str) == "3");
  CHECK(std::string(r->element[2]->str) == "3");  // start: a since <= 3 is from before
  freeReplyObject(r);
  // Another relay went on past it on the promoted replica: seq 5, but its
  // entry 3 is another event than the one the caller saw as 3.
  freeReplyObject(redisCommand(c, "DEL s"));
  freeReplyObject(redisCommand(c, "HSET s:meta epoch E seq 5 start 0"));
  freeReplyObject(redisCommand(c, "XADD s 3-0 e %s", "{\"other\":3}"));
  r = eval(c, RedisStream::load_script(), load_keys(), {"NEW2", "3", "0", "0", "E", "{\"n\":3}"});
  CHECK(std::string(r->element[0]->str) == "NEW2");
  CHECK(std::string(r->element[1]->str) == "5");
  CHECK(std::string(r->element[2]->str) == "5");
  freeReplyObject(r);
  CHECK(meta(c, "epoch") == "NEW2");
  CHECK(meta(c, "start") == "5");
  redisFree(c);
}

TEST_CASE("a caller from another epoch raises the seq and the start to what it saw", "[redis][epoch]") {
  RedisServer server;
  redisContext* c = server.client();
  // A relay that had seen only 3 started this epoch after a wipe and
  // appended 4; this caller had seen 6 of the old one.
  freeReplyObject(redisCommand(c, "HSET s:meta epoch NEW seq 4 start 3"));
  auto* r = eval(c, RedisStream::load_script(), load_keys(), {"X", "6", "0", "0", "OLD", ""});
  CHECK(std::string(r->element[0]->str) == "NEW");
  CHECK(std::string(r->element[1]->str) == "6");
  CHECK(std::string(r->element[2]->str) == "6");
  freeReplyObject(r);
  // Never lowered by a caller that had seen less.
  r = eval(c, RedisStream::load_script(), load_keys(), {"X", "2", "0", "0", "OLD", ""});
  CHECK(std::string(r->element[1]->str) == "6");
  CHECK(std::string(r->element[2]->str) == "6");
  freeReplyObject(r);
  redisFree(c);
}

TEST_CASE("a relay that reconnects to a Redis that lost its last entries reloads into a new epoch",
          "[redis][epoch]") {
  RedisServer server;
  Recorder ra;
  RedisStream a(options_for(server, "A"), &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  for (int i = 1; i <= 3; ++i) a.append(plain("{\"n\":" + std::to_string(i) + "}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 3; }, 10));
  const std::string old_epoch = a.epoch();
  // What a failover to a replica that had only seq 2 looks like: the entry
  // and the counter gone, the connections cut.
  redisContext* c = server.client();
  freeReplyObject(redisCommand(c, "XDEL g 3-0"));
  freeReplyObject(redisCommand(c, "HSET g:meta seq 2"));
  freeReplyObject(redisCommand(c, "CLIENT KILL TYPE normal"));
  REQUIRE(drive({&a}, [&] { return ra.loads.size() == 2 && ra.up; }, 10));
  CHECK(a.epoch() != old_epoch);
  CHECK(a.epoch_start() == 3);
  CHECK(ra.loads.back().start == 3);
  CHECK(cmd_str(c, "HGET g:meta %s", "start") == "3");
  // Numbers go on above what the relay saw.
  a.append(plain("{\"n\":4}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 4; }, 10));
  CHECK(ra.entries.back().seq == 4);
  redisFree(c);
}

TEST_CASE("a relay that only tails learns of a raised start from its report and reloads", "[redis][epoch]") {
  RedisServer server;
  Recorder ra;
  RedisStream a(options_for(server, "A"), &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  redisContext* c = server.client();
  // Another relay raises the start (it had seen more of an older epoch).
  freeReplyObject(redisCommand(c, "HSET g:meta seq 9 start 9"));
  REQUIRE(drive({&a}, [&] { return ra.loads.size() == 2; }, 5));
  CHECK(a.epoch_start() == 9);
  CHECK(a.last_seq() == 9);
  redisFree(c);
}

TEST_CASE("with --redis-replicas and no replica, an append is neither acknowledged nor delivered, "
          "and each WAIT timeout is counted",
          "[redis][wait]") {
  RedisServer server;
  Recorder ra;
  StreamOptions o = options_for(server, "A");
  o.replicas = 1;
  o.wait_timeout = 0.05;
  RedisStream a(o, &ra);
  a.start(now_s());
  REQUIRE(drive({&a}, [&] { return ra.up; }, 10));
  a.append(plain("{\"n\":1}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return a.stats().wait_timeouts >= 3; }, 10));
  CHECK(ra.entries.empty());
  CHECK(a.stats().appended == 0);
  CHECK(a.stats().buffered == 1);
  // A replica attaches: both WAITs are satisfied, the entry is delivered once.
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(server.port())});
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 1 && a.stats().appended == 1; }, 20));
  CHECK(ra.entries[0].seq == 1);
  CHECK(a.stats().buffered == 0);
  a.append(plain("{\"n\":2}"));
  a.flush();
  REQUIRE(drive({&a}, [&] { return ra.entries.size() == 2; }, 10));
  CHECK(ra.entries[1].seq == 2);
  CHECK(a.stats().duplicates == 0);
}
