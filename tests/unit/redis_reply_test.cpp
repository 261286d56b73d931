// SPDX-License-Identifier: Apache-2.0
// The stream's reply decoder (redis_reply.h) on replies built by hiredis's
// own RESP reader from the bytes Redis sends: no server, no sockets.
#include <hiredis/hiredis.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "smws/redis_reply.h"
#include "smws/redis_scripts.h"

using namespace smws::redis;

namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// RESP bytes → the reply tree hiredis hands to our callbacks.
Reply parse(const std::string& resp) {
  redisReader* reader = redisReaderCreate();
  REQUIRE(redisReaderFeed(reader, resp.data(), resp.size()) == REDIS_OK);
  void* out = nullptr;
  REQUIRE(redisReaderGetReply(reader, &out) == REDIS_OK);
  redisReaderFree(reader);
  REQUIRE(out != nullptr);
  return Reply(static_cast<redisReply*>(out));
}

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

// [id, [e, event]]
std::string entry(const std::string& id, const std::string& event) {
  return "*2\r\n" + bulk(id) + "*2\r\n" + bulk("e") + bulk(event);
}

}  // namespace

TEST_CASE("reply_str and reply_u64 read strings, statuses, errors and integers", "[redis][reply]") {
  CHECK(reply_str(parse(bulk("abc")).get()) == "abc");
  CHECK(reply_str(parse("+OK\r\n").get()) == "OK");
  CHECK(reply_str(parse("-ERR no\r\n").get()) == "ERR no");
  CHECK(reply_str(parse(":42\r\n").get()) == "42");
  CHECK(reply_str(parse("$-1\r\n").get()).empty());
  CHECK(reply_str(nullptr).empty());
  CHECK(reply_u64(parse(":42\r\n").get()) == 42);
  CHECK(reply_u64(parse(":-3\r\n").get()) == 0);
  CHECK(reply_u64(parse(bulk("17")).get()) == 17);
  CHECK(reply_u64(parse(bulk("1x")).get()) == 0);
}

TEST_CASE("split_seq takes the number before the first newline", "[redis][reply]") {
  uint64_t seq = 0;
  std::string rest;
  CHECK(split_seq("12\nabc\ndef", &seq, &rest));
  CHECK(seq == 12);
  CHECK(rest == "abc\ndef");
  CHECK_FALSE(split_seq("12", &seq, &rest));
  CHECK_FALSE(split_seq("1a\nx", &seq, &rest));
}

TEST_CASE("a stream entry decodes only with our ID and field", "[redis][reply]") {
  GroupSnapshot::Entry e;
  CHECK(decode_entry(parse(entry("7-0", "{\"type\":\"x\"}")).get(), &e));
  CHECK(e.seq == 7);
  CHECK(e.event == "{\"type\":\"x\"}");
  CHECK_FALSE(decode_entry(parse(entry("7-1", "{}")).get(), &e));       // not an ID we write
  CHECK_FALSE(decode_entry(parse("*2\r\n" + bulk("8-0") + "*2\r\n" + bulk("f") + bulk("{}")).get(), &e));
  CHECK_FALSE(decode_entry(parse(bulk("8-0")).get(), &e));
}

TEST_CASE("an XREAD reply gives the entries in order, skipping those we did not write", "[redis][reply]") {
  std::vector<GroupSnapshot::Entry> entries;
  size_t skipped = 9;
  REQUIRE(decode_xread(parse("*-1\r\n").get(), &entries, &skipped).ok());  // BLOCK timed out
  CHECK(entries.empty());
  CHECK(skipped == 0);
  const std::string resp = "*1\r\n*2\r\n" + bulk("s") + "*3\r\n" + entry("3-0", "{\"a\":1}") +
                           entry("3-5", "{}") + entry("4-0", "{\"a\":2}");
  REQUIRE(decode_xread(parse(resp).get(), &entries, &skipped).ok());
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].seq == 3);
  CHECK(entries[1].seq == 4);
  CHECK(entries[1].event == "{\"a\":2}");
  CHECK(skipped == 1);
  smws::Status bad = decode_xread(parse(":1\r\n").get(), &entries, &skipped);
  CHECK(bad.code == smws::Status::kBadInput);
  CHECK(bad.message == "unexpected reply to XREAD");
}

TEST_CASE("the load script's reply: meta only, or the whole state in order", "[redis][reply]") {
  GroupSnapshot meta;
  REQUIRE(decode_load(parse("*2\r\n" + bulk("E") + bulk("12")).get(), false, &meta).ok());
  CHECK(meta.epoch == "E");
  CHECK(meta.last_seq == 12);
  // machines as HGETALL, pending as HGETALL (one with the Redis ms line,
  // one without), recent newest first, then Redis's clock in ms.
  const std::string machines = "*4\r\n" + bulk("m1") + bulk("5\n\"idle\"\n{\"type\":\"state_change\"}") +
                               bulk("m2") + bulk("garbage");
  const std::string pending = "*4\r\n" + bulk("i-b") + bulk("9\n1000\n{\"id\":\"b\"}") + bulk("i-a") +
                              bulk("4\n{\"id\":\"a\"}");
  const std::string recent = "*3\r\n" + entry("13-0", "{\"late\":1}") + entry("12-0", "{\"n\":12}") +
                             entry("11-0", "{\"n\":11}");
  const std::string resp = "*6\r\n" + bulk("E") + bulk("12") + machines + pending + recent + bulk("3500");
  GroupSnapshot full;
  REQUIRE(decode_load(parse(resp).get(), true, &full).ok());
  CHECK(full.last_seq == 12);
  REQUIRE(full.machines.size() == 1);
  CHECK(full.machines[0].seq == 5);
  CHECK(full.machines[0].former_state == "\"idle\"");
  CHECK(full.machines[0].event == "{\"type\":\"state_change\"}");
  REQUIRE(full.pending.size() == 2);
  CHECK(full.pending[0].event == "{\"id\":\"a\"}");  // seq 4 before seq 9
  CHECK(full.pending[0].age_s == 0);
  CHECK(full.pending[1].event == "{\"id\":\"b\"}");
  CHECK(full.pending[1].age_s == Approx(2.5));
  REQUIRE(full.recent.size() == 2);  // none above the seq, oldest first
  CHECK(full.recent[0].seq == 11);
  CHECK(full.recent[1].seq == 12);
  GroupSnapshot short_one;
  CHECK_FALSE(decode_load(parse("*2\r\n" + bulk("E") + bulk("1")).get(), true, &short_one).ok());
  CHECK(decode_load(parse(":1\r\n").get(), false, &short_one).message == "unexpected reply to the load script");
}

TEST_CASE("the append, decide and report replies", "[redis][reply]") {
  AppendReply a;
  REQUIRE(decode_append(parse("*5\r\n" + bulk("E") + ":3\r\n:5\r\n:0\r\n:2\r\n").get(), &a).ok());
  CHECK(a.epoch == "E");
  CHECK(a.first == 3);
  CHECK(a.last == 5);
  CHECK_FALSE(a.duplicate);
  CHECK(a.has_slowest);
  CHECK(a.slowest == 2);
  REQUIRE(decode_append(parse("*4\r\n" + bulk("E") + ":0\r\n:0\r\n:1\r\n").get(), &a).ok());
  CHECK(a.duplicate);
  CHECK_FALSE(a.has_slowest);
  CHECK_FALSE(decode_append(parse("*2\r\n" + bulk("E") + ":0\r\n").get(), &a).ok());
  bool won = true;
  REQUIRE(decode_decide(parse("*2\r\n" + bulk("E") + ":0\r\n").get(), &won).ok());
  CHECK_FALSE(won);
  REQUIRE(decode_decide(parse("*2\r\n" + bulk("E") + ":8\r\n").get(), &won).ok());
  CHECK(won);
  CHECK(decode_report(parse(":4\r\n").get()).slowest == 4);
  CHECK(decode_report(parse(":-1\r\n").get()).slowest == -1);
  CHECK(decode_report(parse(bulk("4")).get()).slowest == -1);
  ReportReply rep = decode_report(parse("*3\r\n:7\r\n" + bulk("E") + bulk("12")).get());
  CHECK(rep.slowest == 7);
  CHECK(rep.has_epoch);
  CHECK(rep.epoch == "E");
  CHECK(rep.start == 12);
  CHECK_FALSE(decode_report(parse("*3\r\n:-1\r\n" + bulk("") + bulk("0")).get()).has_epoch);
  CHECK(decode_wait(parse(":2\r\n").get()) == 2);
  CHECK(decode_wait(parse("-ERR x\r\n").get()) == 0);
}

TEST_CASE("the load script's reply carries the epoch's start", "[redis][reply]") {
  GroupSnapshot meta;
  REQUIRE(decode_load(parse("*3\r\n" + bulk("E") + bulk("12") + bulk("9")).get(), false, &meta).ok());
  CHECK(meta.start == 9);
  GroupSnapshot old;  // a script of before the start: 0
  REQUIRE(decode_load(parse("*2\r\n" + bulk("E") + bulk("12")).get(), false, &old).ok());
  CHECK(old.start == 0);
  GroupSnapshot full;
  REQUIRE(decode_load(parse("*7\r\n" + bulk("E") + bulk("12") + "*0\r\n*0\r\n*0\r\n" + bulk("1") + bulk("5")).get(),
                      true, &full)
              .ok());
  CHECK(full.start == 5);
}

TEST_CASE("Sentinel's answers: the master's address, +switch-master, ROLE", "[redis][reply][sentinel]") {
  std::string host;
  int port = 0;
  REQUIRE(decode_master_addr(parse("*2\r\n" + bulk("10.0.0.5") + bulk("6380")).get(), &host, &port));
  CHECK(host == "10.0.0.5");
  CHECK(port == 6380);
  CHECK_FALSE(decode_master_addr(parse("*-1\r\n").get(), &host, &port));  // no such master
  CHECK_FALSE(decode_master_addr(parse("*2\r\n" + bulk("h") + bulk("99999")).get(), &host, &port));
  const std::string msg = "*3\r\n" + bulk("message") + bulk("+switch-master") +
                          bulk("mymaster 127.0.0.1 6379 127.0.0.1 6390");
  REQUIRE(decode_switch_master(parse(msg).get(), "mymaster", &host, &port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 6390);
  CHECK_FALSE(decode_switch_master(parse(msg).get(), "other", &host, &port));
  const std::string promoted = "*3\r\n" + bulk("message") + bulk("+promoted-slave") +
                               bulk("slave 127.0.0.1:6391 127.0.0.1 6391 @ mymaster 127.0.0.1 6379");
  REQUIRE(decode_switch_master(parse(promoted).get(), "mymaster", &host, &port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 6391);
  CHECK_FALSE(decode_switch_master(parse(promoted).get(), "other", &host, &port));
  CHECK_FALSE(decode_switch_master(parse("*3\r\n" + bulk("subscribe") + bulk("+switch-master") + ":1\r\n").get(),
                                   "mymaster", &host, &port));
  CHECK(decode_role(parse("*3\r\n" + bulk("master") + ":10\r\n*0\r\n").get()) == "master");
  CHECK(decode_role(parse("*5\r\n" + bulk("slave") + bulk("h") + ":1\r\n" + bulk("connected") + ":1\r\n").get()) ==
        "slave");
  CHECK(decode_role(parse("+OK\r\n").get()).empty());
}

TEST_CASE("refusals of credentials are told from other refusals", "[redis][reply]") {
  CHECK(is_auth_refusal("WRONGPASS invalid username-password pair or user is disabled."));
  CHECK(is_auth_refusal("NOAUTH Authentication required."));
  CHECK(is_auth_refusal("ERR AUTH <password> called without any password configured"));
  CHECK_FALSE(is_auth_refusal("ERR unknown command 'XREAD'"));
  CHECK_FALSE(is_auth_refusal("READONLY You can't write against a read only replica."));
}

TEST_CASE("the embedded scripts are the files without their comments", "[redis][reply]") {
  CHECK(strip_lua_comments("-- SPDX\n  -- note\nlocal a = 1 -- kept\n\nreturn a\n") == "local a = 1 -- kept\nreturn a\n");
  REQUIRE(lua::asset_count() == 5);
  for (size_t i = 0; i < lua::asset_count(); ++i) {
    CHECK(lua::asset_at(i).bytes.rfind("-- SPDX-License-Identifier: Apache-2.0\n", 0) == 0);
  }
  CHECK(append_lua().rfind("local function SLOWEST(key)\n", 0) == 0);
  CHECK(append_lua().find("return {epoch, first, seq, 0, SLOWEST(KEYS[8])}") != std::string::npos);
  CHECK(report_lua().rfind("local function SLOWEST(key)\n", 0) == 0);
  CHECK(decide_lua().find("HDEL") != std::string::npos);
  CHECK(load_lua().find("XREVRANGE") != std::string::npos);
  CHECK(load_lua().find("--") == std::string::npos);
  CHECK(std::string(RedisStream::append_script()) == append_lua());
}
