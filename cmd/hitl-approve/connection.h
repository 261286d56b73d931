// hitl-approve's WebSocket connection to ws-relay, on Poco::Net::WebSocket.
//
// Threads:
//   - the reader thread (owned by Connection, started by open(), joined by the
//     destructor) is the only one that reads the socket. It answers pings
//     (POCO does not), answers application pings ({"type":"ping"}), keeps the
//     HITL messages (initial, interrupt, decision, error, gap, dropped) and
//     drops the rest of the event stream, and posts what it keeps to the inbox.
//     It never blocks on the UI: the inbox is bounded and an overflow is
//     reported (the UI then asks the relay for a fresh snapshot).
//   - any other thread (the UI thread) sends with send_text(), takes messages
//     with take() when wake_fd() is readable, and closes.
// send_mutex_ serialises every frame written to the socket: two concurrent
// senders (a pong from the reader, a decision from the UI) would interleave
// their bytes and corrupt the stream.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace Poco::Net {
class HTTPClientSession;
class WebSocket;
}  // namespace Poco::Net

namespace smws::hitl_approve {

struct ConnectOptions {
  std::string url;             // ws:// or wss://
  std::string token;           // sent as "Authorization: Bearer TOKEN" when not empty
  bool insecure = false;       // wss: do not verify the certificate
  double connect_timeout = 10;  // TCP connect + TLS + upgrade
};

struct ConnectResult {
  enum Code { kOk, kUnavailable, kDenied, kBadUrl } code = kOk;
  std::string error;  // what went wrong, for "hitl-approve: error: ..."
};

struct Inbound {
  enum Kind { kMessage, kClosed } kind = kMessage;
  nlohmann::json message;  // kMessage
  std::string why;         // kClosed: how the connection ended
};

class Connection {
 public:
  static std::unique_ptr<Connection> open(const ConnectOptions& options, ConnectResult* result);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one text message; thread-safe. False (and error) when the socket
  // failed; the reader thread then reports kClosed as well.
  bool send_text(const std::string& text, std::string& error);

  // Sends a close frame (1000) and stops the reader; idempotent.
  void close();

  // Readable while the inbox holds something; take() empties it.
  int wake_fd() const { return wake_pipe_[0]; }
  std::deque<Inbound> take();
  // True (once) when messages were dropped because the inbox was full.
  bool take_overflow();

  // "ip:port" of our end, as the relay sees it on loopback (its "client").
  const std::string& local_address() const { return local_address_; }

 private:
  Connection() = default;
  void read_loop();
  void post(Inbound item);
  bool send_frame(const void* data, int size, int flags, std::string& error);

  // The inbox holds at most this many messages. HITL traffic runs at human
  // rates; a UI blocked in $EDITOR for minutes still needs far fewer.
  static constexpr std::size_t kMaxInbox = 4096;

  std::unique_ptr<Poco::Net::HTTPClientSession> session_;
  std::unique_ptr<Poco::Net::WebSocket> socket_;
  std::string local_address_;
  std::thread reader_;
  std::atomic<bool> stop_{false};

  std::mutex send_mutex_;  // guards writes to socket_ (frames)
  bool closed_sent_ = false;  // guarded by send_mutex_

  std::mutex inbox_mutex_;      // guards inbox_, overflow_
  std::deque<Inbound> inbox_;
  bool overflow_ = false;
  int wake_pipe_[2] = {-1, -1};  // written by post(), drained by take()
};

}  // namespace smws::hitl_approve
