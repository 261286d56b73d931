// SPDX-License-Identifier: Apache-2.0
// The measured half of docs/architecture.md's "hiredis, not POCO's Redis
// client": the tail's work (XREAD COUNT 1000 over a stream of 100-byte
// events, each entry's event copied out, as RedisStream::on_tail_reply
// does) through hiredis and through Poco::Redis::Client, both blocking on
// one thread, against the same Redis: reply parsing and client overhead
// only, before any of the thread handoff POCO's blocking client would add.
//
//   redis_client_compare PORT N   ->  {"entries":N,"hiredis_per_s":R,"poco_per_s":R}
// Fills the stream "compare" with N entries first (pipelined XADD).
#include <hiredis/hiredis.h>

#include <Poco/Redis/Array.h>
#include <Poco/Redis/Client.h>
#include <Poco/Redis/Command.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

const char kKey[] = "compare";

// One pass over the stream with hiredis; returns the events copied out.
size_t read_hiredis(redisContext* c, size_t n) {
  size_t got = 0;
  std::string last = "0-0";
  std::vector<std::string> events;
  while (got < n) {
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "XREAD COUNT 1000 STREAMS %s %s", kKey, last.c_str()));
    if (!r || r->type != REDIS_REPLY_ARRAY) std::exit(70);
    const redisReply* list = r->element[0]->element[1];
    events.clear();
    for (size_t i = 0; i < list->elements; ++i) {
      const redisReply* e = list->element[i];
      last.assign(e->element[0]->str, e->element[0]->len);
      const redisReply* f = e->element[1];
      events.emplace_back(f->element[1]->str, f->element[1]->len);
    }
    got += list->elements;
    freeReplyObject(r);
  }
  return got;
}

size_t read_poco(Poco::Redis::Client& client, size_t n) {
  using Poco::Redis::Array;
  using Poco::Redis::BulkString;
  size_t got = 0;
  std::string last = "0-0";
  std::vector<std::string> events;
  while (got < n) {
    Array cmd;
    cmd << "XREAD" << "COUNT" << "1000" << "STREAMS" << kKey << last;
    Array reply = client.execute<Array>(cmd);
    Array list = reply.get<Array>(0).get<Array>(1);
    events.clear();
    for (size_t i = 0; i < list.size(); ++i) {
      Array e = list.get<Array>(i);
      last = e.get<BulkString>(0).value();
      events.push_back(e.get<Array>(1).get<BulkString>(1).value());
    }
    got += list.size();
  }
  return got;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: redis_client_compare PORT N\n");
    return 64;
  }
  const int port = std::atoi(argv[1]);
  const size_t n = std::strtoul(argv[2], nullptr, 10);
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) return 69;
  freeReplyObject(redisCommand(c, "DEL %s", kKey));
  const std::string event = "{\"type\":\"b\",\"i\":0,\"t\":0,\"p\":\"" + std::string(64, 'x') + "\"}";
  for (size_t i = 1; i <= n; ++i) {
    std::string id = std::to_string(i) + "-0";
    redisAppendCommand(c, "XADD %s %s e %b", kKey, id.c_str(), event.data(), event.size());
    if (i % 1000 == 0 || i == n) {
      for (size_t k = (i - 1) / 1000 * 1000; k < i; ++k) {
        void* r = nullptr;
        if (redisGetReply(c, &r) != REDIS_OK) return 70;
        freeReplyObject(r);
      }
    }
  }
  Poco::Redis::Client poco("127.0.0.1", port);
  // Warm both (connections, Redis's reply buffers), then the best of three.
  read_hiredis(c, n);
  read_poco(poco, n);
  double best_h = 1e9, best_p = 1e9;
  for (int round = 0; round < 3; ++round) {
    double t0 = seconds();
    read_hiredis(c, n);
    double t1 = seconds();
    read_poco(poco, n);
    double t2 = seconds();
    best_h = std::min(best_h, t1 - t0);
    best_p = std::min(best_p, t2 - t1);
  }
  std::printf("{\"entries\":%zu,\"hiredis_per_s\":%.0f,\"poco_per_s\":%.0f}\n", n, n / best_h,
              n / best_p);
  redisFree(c);
  return 0;
}
