// SPDX-License-Identifier: Apache-2.0
// RedisStream's Sentinel part (--redis-sentinel, --redis-master): asking the
// Sentinels in turn for the master at every connection attempt, the
// +switch-master / +promoted-slave subscription kept beside the link, and
// following a failover. Same class and thread as redis_stream.cpp (the
// loop); see docs/scale-out.md, "Redis that fails over".
#include <hiredis/hiredis.h>

#include "smws/host_address.h"
#include "smws/log.h"
#include "smws/redis_connection.h"
#include "smws/redis_reply.h"
#include "smws/redis_stream.h"

namespace smws::redis {

void RedisStream::ask_next_sentinel() {
  if (sentinel_tries_ >= options_.sentinels.size()) {
    fail("no Sentinel named the master " + options_.master_name + " (last: " + sentinel_error_ + ")");
    return;
  }
  ++sentinel_tries_;
  sentinel_asking_ = true;
  resolve_then(options_.sentinels[sentinel_next_ % options_.sentinels.size()].host, /*sentinel=*/true);
}

void RedisStream::ask_sentinel_at(const std::string& address) {
  const HostPort& s = options_.sentinels[sentinel_next_ % options_.sentinels.size()];
  ask_address_ = address;
  ask_port_ = s.port;
  Status opened = sentinel_ask_->open(address, s.port);
  if (!opened.ok()) {
    on_sentinel_lost(/*connecting=*/true, opened.message);
    return;
  }
  sentinel_ask_->command({"SENTINEL", "get-master-addr-by-name", options_.master_name}, now_, kReplyTimeout,
                         [this](redisReply* reply) {
                           if (!destroying_) on_sentinel_answer(reply);
                         });
}

void RedisStream::on_sentinel_lost(bool connecting, const std::string& why) {
  if (destroying_ || !sentinel_asking_) return;
  const HostPort& s = options_.sentinels[sentinel_next_ % options_.sentinels.size()];
  sentinel_error_ = "Sentinel " + s.display() + ": " + (connecting ? "cannot connect: " : "") + why;
  log::note(1, "redis: " + sentinel_error_);
  // The next one in turn, once out of this connection's callback.
  ++sentinel_next_;
  sentinel_retry_ = true;
}

void RedisStream::on_sentinel_answer(redisReply* reply) {
  if (!reply || !sentinel_asking_) return;  // gone first: on_sentinel_lost
  std::string host;
  int port = 0;
  if (!decode_master_addr(reply, &host, &port)) {
    on_sentinel_lost(/*connecting=*/false, reply->type == REDIS_REPLY_ERROR
                                               ? "refused: " + reply_str(reply)
                                               : "knows no master named " + options_.master_name);
    return;
  }
  sentinel_asking_ = false;
  sentinel_ask_done_ = true;  // closed once out of its callback
  if (sub_address_ != ask_address_ || sub_port_ != ask_port_) {
    sub_address_ = ask_address_;
    sub_port_ = ask_port_;
    if (!sentinel_subscribed_) sentinel_sub_retry_ = 0;
  }
  use_master(host, port);
  if (!sentinel_subscribed_ && now_ >= sentinel_sub_retry_) subscribe_sentinel();
  if (state_ != State::kConnecting) return;
  if (!is_numeric_host(host)) {
    fail("Sentinel named the master " + options_.master_name + " by a name (" + host +
         "): set its announce-ip to an address");
    return;
  }
  connect_to(host);
}

void RedisStream::subscribe_sentinel() {
  if (sub_address_.empty()) return;
  Status opened = sentinel_sub_->open(sub_address_, sub_port_);
  if (!opened.ok()) {
    sentinel_sub_retry_ = now_ + 1.0;
    return;
  }
  sentinel_subscribed_ = true;
  // One SUBSCRIBE per channel: hiredis calls a subscription's callback once
  // per channel when the connection goes, and each owns its own.
  for (const char* channel : {"+switch-master", "+promoted-slave"}) {
    sentinel_sub_->subscribe({"SUBSCRIBE", channel}, [this](redisReply* reply) {
      if (!destroying_) on_switch_message(reply);
    });
  }
}

void RedisStream::on_switch_message(redisReply* reply) {
  if (!reply) return;  // the subscription went: its LostFn
  std::string host;
  int port = 0;
  if (!decode_switch_master(reply, options_.master_name, &host, &port)) return;
  if (have_master_ && host == master_host_ && port == master_port_) return;
  use_master(host, port);
  // Follow it now: the link moves to the promoted replica at the next tick.
  backoff_ = kFirstBackoff;
  if (state_ != State::kDown) fail("the master moved (Sentinel failover)");
  next_attempt_ = now_;
}

void RedisStream::use_master(const std::string& host, int port) {
  if (have_master_ && (host != master_host_ || port != master_port_)) {
    ++stats_.failovers;
    log::warn("redis: following the failover of " + options_.master_name + ": the master is now " + host + ":" +
              std::to_string(port));
  }
  master_host_ = host;
  master_port_ = port;
  have_master_ = true;
}

}  // namespace smws::redis
