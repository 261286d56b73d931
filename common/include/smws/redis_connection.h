// SPDX-License-Identifier: Apache-2.0
// One hiredis async connection driven by an epoll set its owner watches
// (hiredis's own adapters want libevent or libuv; this is the few lines of
// glue hiredis asks for: add/del read/write, cleanup). Used by RedisStream
// for its command and tail connections and for the Sentinel connection.
//
// Threads: ONE thread (the owner's loop) calls everything; callbacks run
// on it, from inside handle_events() or close(). No lock.
//
// Replies: every command()'s callback is called exactly once: with the
// reply, or with null when the connection goes first (close(), a loss, or
// not open at all: then at once, inside command()). A subscription's
// callback (subscribe()) is called for every message, then once with null.
// A loss (connect refused, reset, closed by the peer) is told once to the
// LostFn, never for a close() of our own. close() must not be called from
// inside one of this connection's callbacks (hiredis is in the middle of
// its read): the owner defers it (RedisStream::drop_requested_).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "smws/status.h"

struct redisAsyncContext;
struct redisReply;

namespace smws::redis {

class Connection {
 public:
  using ReplyFn = std::function<void(redisReply* reply)>;
  // connecting: the connection never got up (refused, unreachable).
  using LostFn = std::function<void(const Connection& c, bool connecting, const std::string& why)>;

  // epoll_fd: the owner's set; events for this connection carry `this` as
  // their data.ptr (dispatch them to handle_events()).
  Connection(int epoll_fd, const char* name, LostFn on_lost);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting to a numeric address (no DNS: hiredis would call
  // getaddrinfo on this thread). Commands may be sent at once; they go out
  // when the connection is up. Not OK: why (the context could not be made).
  Status open(const std::string& address, int port);
  bool is_open() const { return ac_ != nullptr; }
  const char* name() const { return name_; }

  // Sends argv; fn gets its reply. `allowed`: seconds the reply may take
  // after `now`, or after the reply before it if that is due later (a
  // command queued behind a blocking one waits for it).
  void command(const std::vector<std::string>& argv, double now, double allowed, ReplyFn fn);
  // SUBSCRIBE (or PSUBSCRIBE) argv: fn gets the confirmation and every
  // message, then null once the connection goes. No deadline.
  void subscribe(const std::vector<std::string>& argv, ReplyFn fn);

  // What epoll reported for this connection.
  void handle_events(uint32_t events);
  // Frees the connection now: pending callbacks get null. No LostFn.
  void close();
  // A reply is overdue at now.
  bool late(double now) const { return !deadlines_.empty() && now > deadlines_.front(); }

 private:
  struct Request;
  static void on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata);
  static void on_connect_cb(const redisAsyncContext* ac, int status);
  static void on_disconnect_cb(const redisAsyncContext* ac, int status);
  static void add_read(void* p);
  static void del_read(void* p);
  static void add_write(void* p);
  static void del_write(void* p);
  static void cleanup(void* p);
  void update();
  void unregister();
  void send(const std::vector<std::string>& argv, Request* req);

  int epoll_fd_;
  const char* name_;
  LostFn on_lost_;
  redisAsyncContext* ac_ = nullptr;
  int fd_ = -1;
  bool registered_ = false;
  bool reading_ = false, writing_ = false;
  std::deque<double> deadlines_;  // of the commands not yet answered, non-decreasing
};

}  // namespace smws::redis
