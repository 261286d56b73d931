// SPDX-License-Identifier: Apache-2.0
// hiredis's async API on an epoll set of the owner's (redis_connection.h).
#include "smws/redis_connection.h"

#include <sys/epoll.h>

#include <algorithm>
#include <memory>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

namespace smws::redis {
namespace {

// The read buffer each connection keeps between replies (see open()).
constexpr size_t kReaderKeep = 4u << 20;

}  // namespace

// One command in flight; hiredis hands it back once (a subscription: once
// per message, then once with null when the context is freed).
struct Connection::Request {
  ReplyFn fn;
  bool subscription = false;
};

Connection::Connection(int epoll_fd, const char* name, LostFn on_lost)
    : epoll_fd_(epoll_fd), name_(name), on_lost_(std::move(on_lost)) {}

Connection::~Connection() { close(); }

Status Connection::open(const std::string& address, int port) {
  close();
  deadlines_.clear();
  // A numeric address: hiredis's getaddrinfo answers without DNS.
  redisAsyncContext* ac = redisAsyncConnect(address.c_str(), port);
  if (!ac) return Status::Error(Status::kSystem, "out of memory");
  if (ac->err) {
    std::string why = ac->errstr;
    redisAsyncFree(ac);
    return Status::Error(Status::kUnavailable, why);
  }
  // hiredis frees its read buffer whenever it is empty and larger than
  // maxbuf (16 KiB by default), so every tail reply of ~1000 entries grew
  // it again from nothing (measured: a tenth of a group relay's time in
  // malloc). A buffer up to kReaderKeep is kept.
  if (ac->c.reader) ac->c.reader->maxbuf = kReaderKeep;
  ac_ = ac;
  fd_ = ac->c.fd;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = &Connection::add_read;
  ac->ev.delRead = &Connection::del_read;
  ac->ev.addWrite = &Connection::add_write;
  ac->ev.delWrite = &Connection::del_write;
  ac->ev.cleanup = &Connection::cleanup;
  redisAsyncSetConnectCallback(ac, &Connection::on_connect_cb);
  redisAsyncSetDisconnectCallback(ac, &Connection::on_disconnect_cb);
  return Status::Ok();
}

void Connection::command(const std::vector<std::string>& argv, double now, double allowed, ReplyFn fn) {
  const double due = std::max(now + allowed, deadlines_.empty() ? 0.0 : deadlines_.back());
  deadlines_.push_back(due);
  send(argv, new Request{std::move(fn), false});
}

void Connection::subscribe(const std::vector<std::string>& argv, ReplyFn fn) {
  send(argv, new Request{std::move(fn), true});
}

void Connection::send(const std::vector<std::string>& argv, Request* req) {
  if (!ac_) {
    // Not connected: answer at once, as a lost connection would.
    std::unique_ptr<Request> owned(req);
    if (!req->subscription) deadlines_.pop_back();
    owned->fn(nullptr);
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
  if (redisAsyncCommandArgv(ac_, &Connection::on_reply_cb, req, static_cast<int>(args.size()), args.data(),
                            lens.data()) != REDIS_OK) {
    std::unique_ptr<Request> owned(req);
    if (!req->subscription) deadlines_.pop_back();
    owned->fn(nullptr);
  }
}

void Connection::on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* req = static_cast<Request*>(privdata);
  auto* c = static_cast<Connection*>(ac->data);
  auto* r = static_cast<redisReply*>(reply);
  if (req->subscription) {
    // Kept for the next message until the context goes (null).
    if (r) {
      req->fn(r);
      return;
    }
    std::unique_ptr<Request> owned(req);
    owned->fn(nullptr);
    return;
  }
  std::unique_ptr<Request> owned(req);
  if (c && !c->deadlines_.empty()) c->deadlines_.pop_front();
  owned->fn(r);
}

void Connection::on_connect_cb(const redisAsyncContext* ac, int status) {
  auto* c = static_cast<Connection*>(ac->data);
  if (!c || status == REDIS_OK) return;
  // hiredis frees the context after this returns (pending callbacks get null).
  std::string why = ac->errstr;
  c->ac_ = nullptr;
  c->unregister();
  if (c->on_lost_) c->on_lost_(*c, true, why);
}

void Connection::on_disconnect_cb(const redisAsyncContext* ac, int status) {
  auto* c = static_cast<Connection*>(ac->data);
  if (!c) return;
  // ac_ is already null when close() freed it: our own close, not a loss.
  const bool ours = c->ac_ == nullptr;
  std::string why = status == REDIS_OK ? "closed" : ac->errstr;
  c->ac_ = nullptr;
  c->unregister();
  if (!ours && c->on_lost_) c->on_lost_(*c, false, why);
}

void Connection::handle_events(uint32_t events) {
  if (ac_ && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(ac_);
  if (ac_ && (events & EPOLLOUT)) redisAsyncHandleWrite(ac_);
}

void Connection::close() {
  if (redisAsyncContext* ac = ac_) {
    ac_ = nullptr;
    // Pending callbacks run now with a null reply (and must not recurse
    // into a second free): ac->data still points here, ac_ is null.
    redisAsyncFree(ac);
  }
  unregister();
  deadlines_.clear();
}

void Connection::update() {
  if (fd_ < 0) return;
  epoll_event ev{};
  ev.events = (reading_ ? EPOLLIN : 0u) | (writing_ ? EPOLLOUT : 0u);
  ev.data.ptr = this;
  if (!registered_) {
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd_, &ev) == 0) registered_ = true;
  } else {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd_, &ev);
  }
}

void Connection::unregister() {
  if (registered_ && fd_ >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd_, nullptr);
  registered_ = false;
  reading_ = writing_ = false;
  fd_ = -1;
}

void Connection::add_read(void* p) {
  auto* c = static_cast<Connection*>(p);
  c->reading_ = true;
  c->update();
}
void Connection::del_read(void* p) {
  auto* c = static_cast<Connection*>(p);
  c->reading_ = false;
  c->update();
}
void Connection::add_write(void* p) {
  auto* c = static_cast<Connection*>(p);
  c->writing_ = true;
  c->update();
}
void Connection::del_write(void* p) {
  auto* c = static_cast<Connection*>(p);
  c->writing_ = false;
  c->update();
}
void Connection::cleanup(void* p) { static_cast<Connection*>(p)->unregister(); }

}  // namespace smws::redis
