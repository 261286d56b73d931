// WsServer: a WebSocket + HTTP server driven by ONE epoll thread that owns
// every socket (listener, handshakes, clients). Design and measurements:
// docs/architecture.md.
//
// Threads
//   loop thread   the thread that calls run(). It alone touches sockets,
//                 connection state, queues and stats, and it calls every
//                 WsServerHandler method. Handler code must not block.
//   any thread    may call wake() (an eventfd write); the loop then calls
//                 handler->on_wake(), where the handler moves whatever its own
//                 producer threads posted into send()/broadcast().
//
// Guarantees
//   - No client can block the loop: sockets are non-blocking, partial writes
//     resume where they stopped (same buffer for TLS), reads are bounded per
//     turn so a flooding client cannot starve the others.
//   - Each client has a bounded queue of shared, encoded-once frames
//     (max_queue data messages). On overflow: kDisconnect closes it with 1013
//     and drops TCP if the close is not taken within close_timeout;
//     kDrop drops the oldest queued messages and sends
//     {"type":"dropped","count":N} in their place, so every message is either
//     delivered or counted.
//   - Liveness by ping deadline: a ping every ping_interval; no pong within
//     ping_timeout → close 1008 "ping timeout". A client that is merely
//     silent (but answers pings) is never closed.
//   - Protocol violations close only the offending client, with RFC 6455's
//     code (1002 framing, 1007 UTF-8, 1009 size).
//
// Plain sockets are written with MSG_NOSIGNAL, but OpenSSL's socket BIO uses
// write(2): with TLS the process must ignore SIGPIPE (shutdown::install()
// does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smws/net/handshake.h"

namespace smws::net {

// One encoded WebSocket frame, shared by every queue it is in: a broadcast is
// encoded once and each client holds a reference.
using Frame = std::shared_ptr<const std::string>;
Frame make_text_frame(std::string_view payload);

using ClientId = uint64_t;

enum class SlowClientPolicy { kDisconnect, kDrop };

// What happened to a message handed to send(): uWebSockets' SendStatus idea.
enum class SendStatus {
  kQueued,      // in the client's queue
  kDropped,     // queue full under kDrop: the oldest message made room (counted)
  kClosing,     // client is closing (or just got closed for overflow): not sent
  kNoClient,    // unknown id
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 3002;  // 0: the kernel picks; see bound_port()
  std::string path = "/ws/events";
  // More WebSocket paths (ws-relay's --route); a client's ClientInfo says
  // which one it asked for (request.path).
  std::vector<std::string> extra_paths;
  size_t max_queue = 1024;  // data messages per client
  SlowClientPolicy slow_client = SlowClientPolicy::kDisconnect;
  double ping_interval = 20;  // seconds; 0 disables pings
  double ping_timeout = 40;
  bool app_ping = false;      // also send {"type":"ping","timestamp":...}
  size_t max_message = 1 << 20;  // largest client message (1009 above)
  size_t max_clients = 10000;    // open WebSocket clients (503 above)
  std::vector<std::string> allow_origins;  // empty: same host only
  std::string token;                       // empty: no token required
  std::string tls_cert, tls_key;           // both set: wss/https
  // An HTTP request head or TLS handshake must complete within this (slowloris).
  double handshake_timeout = 10;
  // TCP connections still in their handshake, at most; one accepted above
  // this is closed at once. Each holds a descriptor and up to 16 KiB of
  // request head until handshake_timeout, so idle connects could otherwise
  // exhaust descriptors. A real handshake takes a round trip or two, so even
  // a reconnect storm of thousands keeps far fewer than 1024 in flight;
  // 1024 x 16 KiB bounds head buffers at 16 MiB.
  size_t max_handshaking = 1024;
  // A close we sent must be taken (and answered) within this; the SPEC's 2 s.
  double close_timeout = 2;
};

// Counters, owned and written by the loop thread (read them there, e.g. from
// a handler's on_http for /metrics).
struct ServerStats {
  uint64_t clients = 0;              // open WebSocket clients now
  uint64_t tcp_connections = 0;      // TCP connections held now, any phase
                                     // (handshake, open, closing, lingering)
  uint64_t connections_total = 0;    // completed WebSocket handshakes
  uint64_t messages_out = 0;         // data messages fully handed to the kernel
  uint64_t bytes_out = 0;
  uint64_t messages_in = 0;          // data messages received from clients
  uint64_t dropped = 0;              // messages dropped under kDrop
  uint64_t slow_client_closes = 0;   // closes with 1013
  uint64_t ping_timeouts = 0;        // closes with 1008 "ping timeout"
  uint64_t protocol_errors = 0;      // closes with 1002/1007/1009
  uint64_t http_requests = 0;        // non-upgrade requests served
  uint64_t handshakes_refused = 0;   // upgrade requests answered with 4xx/5xx
  uint64_t accepts_shed = 0;         // connections closed at accept: already
                                     // max_handshaking handshakes in flight
  uint64_t writes_refused = 0;       // write calls that took nothing (EAGAIN,
                                     // TLS WANT_*): a stalled client costs one
                                     // when it stalls, not one per event
};

struct ClientInfo {
  ClientId id = 0;
  std::string peer;      // "ip:port"
  HttpRequest request;   // the upgrade request (query, headers)
};

// Called on the loop thread only. Methods must not block.
class WsServerHandler {
 public:
  virtual ~WsServerHandler() = default;
  // A request that is not a WebSocket upgrade on options.path.
  virtual HttpReply on_http(const HttpRequest& request) = 0;
  // A client completed its handshake; send() its first messages here. The
  // client joins the broadcast list when on_open returns, so broadcasts made
  // inside on_open do not reach it.
  virtual void on_open(const ClientInfo& client) = 0;
  // A complete text (binary = false) or binary message from a client.
  virtual void on_message(ClientId id, std::string_view payload, bool binary) = 0;
  virtual void on_close(ClientId id) = 0;
  // wake() was called from some thread.
  virtual void on_wake() {}
  // Called every few hundred milliseconds (timeouts of the handler's own).
  virtual void on_tick(double now) {}
  // The fd given to watch() is readable (level-triggered: called again on
  // the next turn while it stays readable, so read once per call).
  virtual void on_readable(int fd) {}
};

class WsServer {
 public:
  WsServer(ServerOptions options, WsServerHandler* handler);
  ~WsServer();
  WsServer(const WsServer&) = delete;
  WsServer& operator=(const WsServer&) = delete;

  // Loads TLS, binds and listens. false and *error ("cannot listen on
  // 127.0.0.1:3002: Address already in use") on failure.
  bool open(std::string* error);
  uint16_t bound_port() const;
  // "ws://127.0.0.1:PORT/ws/events" (wss:// with TLS; IPv6 in brackets).
  std::string url() const;

  // Runs the loop until shutdown completed (SIGINT/SIGTERM via
  // smws::shutdown, or begin_shutdown()). Returns when every client is gone.
  // A signal discards each client's unstarted queued data so close 1001 goes
  // out next (2 s to take it); during a begin_shutdown() drain it cuts every
  // grace to those 2 s.
  void run();

  // --- any thread ---
  void wake();

  // --- loop thread only ---
  // initial: part of what a client receives first (snapshot, history); not
  // held to max_queue, so a --history longer than the queue does not get a
  // new client closed as slow before it could read anything.
  SendStatus send(ClientId id, const Frame& frame, bool initial = false);
  SendStatus send_text(ClientId id, std::string_view payload);
  // Queues the frame to every open client. Returns how many queued it.
  size_t broadcast(const Frame& frame);
  // Starts a close handshake with one client (unsent data after the frame
  // being written is discarded).
  void close(ClientId id, uint16_t code, std::string_view reason);
  // Watches one extra fd (the relay's stdin) for readability, so its data is
  // handled on the loop thread without a hop through another thread. False
  // when epoll cannot watch it (a regular file): read it on a thread then.
  bool watch(int fd);
  void unwatch(int fd);
  // Marks the client alive as if it answered a ping (application-level pong).
  void note_pong(ClientId id);
  // Stops accepting; every client gets its queued data then close 1001 and
  // has `seconds` to take it (but only the close grace to answer once the
  // 1001 is written); run() returns when all are gone.
  void begin_shutdown(double seconds);
  bool shutting_down() const;
  const ServerStats& stats() const;
  // Seconds on the loop's monotonic clock.
  static double now();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace smws::net
