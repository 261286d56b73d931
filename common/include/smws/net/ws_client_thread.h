// SPDX-License-Identifier: Apache-2.0
// A WsClient (ws_client.h) on a reader thread of its own, for a tool whose
// main thread blocks for long stretches (hitl-approve while $EDITOR runs or
// a reject message is typed) and must stay connected meanwhile: the reader
// answers pings and the server's close at once, keeps the text messages a
// filter wants, and posts them to a bounded inbox that the tool's thread
// takes from (with a timeout, or when wake_fd() is readable in its poll).
//
// Threads:
//   - the reader thread (started by open(), joined by close() and the
//     destructor) is the only one that touches the WsClient: it reads,
//     decodes, writes every frame (pongs, our messages, the close) and
//     closes the socket. It never waits on the tool: a full inbox drops the
//     message and raises the overflow flag instead.
//   - the owner (the tool's thread) calls send_text() (queued to outbox_,
//     written by the reader), take(), take_overflow() and close();
//     send_text() may also be called from any other thread.
// mu_ guards outbox_, close_requested_, inbox_, overflow_ and done_; the
// reader holds it only to move items in or out, never across I/O.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "smws/net/ws_client.h"

namespace smws::net {

// What the reader posts to the inbox.
struct WsInbound {
  enum class Kind { kMessage, kClosed };
  Kind kind = Kind::kMessage;
  std::string text;  // kMessage: a text message the filter kept
  std::string why;   // kClosed: how the connection ended, for the user
};

// Runs on the reader thread for each complete text message. Returns true to
// post it to the inbox. May set *reply to a text message that the reader
// sends back at once (an application-level pong).
using WsTextFilter = std::function<bool(std::string_view text, std::string* reply)>;

struct WsClientThreadOptions {
  WsTextFilter filter;  // empty: keep every text message
  // Who is at the other end, in kClosed's words: "the relay closed the
  // connection (1001 going away)".
  std::string peer_name = "the server";
  // Messages held in the inbox before new ones are dropped (and overflow
  // raised). hitl-approve's traffic runs at human rates; 4096 is far above
  // what a UI blocked in an editor for minutes needs.
  std::size_t max_inbox = 4096;
};

class WsClientThread {
 public:
  // Connects (blocking, bounded by client.connect_timeout_s: resolve,
  // connect, TLS, upgrade). *info says how it went; nullptr unless it is
  // kOpen, else the reader thread runs.
  static std::unique_ptr<WsClientThread> open(const WsUrl& url, const WsClientOptions& client,
                                              WsClientThreadOptions options, HandshakeInfo* info);
  ~WsClientThread();
  WsClientThread(const WsClientThread&) = delete;
  WsClientThread& operator=(const WsClientThread&) = delete;

  // Any thread. Queues a text message; false once the connection is closed
  // or closing (a failed write shows up as a kClosed item).
  bool send_text(std::string text);

  // The owner's thread; idempotent. Sends a close (1000), waits up to kCloseWait for
  // the server's answer, closes the socket and joins the reader. Nothing is
  // posted for a close asked for here.
  void close();

  // Readable while the inbox holds something (for the caller's poll).
  int wake_fd() const { return wake_in_[0]; }
  // Everything in the inbox, waiting up to timeout for the first item
  // (zero: no wait).
  std::deque<WsInbound> take(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // True (once) when messages were dropped because the inbox was full.
  bool take_overflow();

  // "ip:port" of our end (what a server sees as the peer).
  const std::string& local_address() const { return local_address_; }

  // The server's close is answered within this long at most (then the
  // socket is closed anyway): a live relay answers in a round trip.
  static constexpr std::chrono::milliseconds kCloseWait{1000};
  // Once a frame has started, its rest must arrive within this long; a
  // server stalled mid-frame for longer counts as a lost connection.
  static constexpr std::chrono::seconds kFrameTimeout{30};
  // Our queued bytes must start moving within this long; a server that
  // reads nothing for longer counts as a lost connection.
  static constexpr std::chrono::seconds kSendTimeout{10};

 private:
  WsClientThread() = default;
  void run();
  void post(WsInbound item);

  WsClient client_;  // the reader thread's alone once it runs
  WsClientThreadOptions options_;
  std::string local_address_;
  std::thread reader_;
  int wake_out_[2] = {-1, -1};  // wakes the reader: outbox_ or close_requested_
  int wake_in_[2] = {-1, -1};   // readable while inbox_ holds something

  std::mutex mu_;
  std::condition_variable inbox_cv_;  // signalled by post()
  std::deque<std::string> outbox_;    // GUARDED_BY(mu_)
  bool close_requested_ = false;      // GUARDED_BY(mu_)
  bool done_ = false;                 // GUARDED_BY(mu_): the reader has stopped
  std::deque<WsInbound> inbox_;       // GUARDED_BY(mu_)
  bool overflow_ = false;             // GUARDED_BY(mu_)
};

}  // namespace smws::net
