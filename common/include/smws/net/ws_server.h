// SPDX-License-Identifier: Apache-2.0
// WsServer: a WebSocket + HTTP server driven by ONE epoll thread that owns
// every socket (listener, handshakes, clients). It knows WebSocket and HTTP,
// not the protocol spoken over them: the tool registers its HTTP routes,
// gives it the messages it must send on its own (a drop notice, an
// application keepalive) and decides when a client joins the broadcast.
// Design, threads and measurements:
// docs/architecture.md.
//
// The pieces, one concept per file:
//   ws_server.cpp        the loop and connection lifecycle (this header)
//   send_queue.h         a connection's output queue and drop policy
//   transport.h          plain TCP / TLS bytes of one connection
//   upgrade_admission.h  which upgrade requests become clients
//   http_routes.h        the plain-HTTP routes the tool registers
//
// Threads
//   loop thread   the thread that calls run(). It alone touches sockets,
//                 connection state, queues and stats, and it calls every
//                 WsServerHandler method, route handler and watch callback.
//                 None of those may block.
//   any thread    may call wake() (an eventfd write); the loop then calls
//                 handler->on_wake(), where the handler moves whatever its own
//                 producer threads posted into send()/broadcast().
//
// Guarantees
//   - No client can block the loop: sockets are non-blocking, partial writes
//     resume where they stopped (same buffer for TLS), reads are bounded per
//     turn so a flooding client cannot starve the others.
//   - Each client has a bounded queue of shared, encoded-once frames
//     (max_queue data messages and max_queue_bytes of them; the bytes bound
//     also holds what join() queues first). On overflow: kDisconnect closes it with 1013
//     and drops TCP if the close is not taken within close_timeout;
//     kDrop drops the oldest queued messages and queues the tool's
//     drop_notice in their place, so every message is delivered or counted.
//   - Liveness by ping deadline: a ping every ping_interval; no pong within
//     ping_timeout of the ping's write to the socket (not its queueing:
//     behind a backlog it waits its turn) -> close 1008 "ping timeout". A
//     client that is merely silent (but answers pings) is never closed; one
//     whose backlog never lets the ping out is a slow client (max_queue)
//     while the peer takes bytes. One whose TCP takes no byte for
//     ping_timeout while the ping waits is a ping timeout too (a burst, then
//     quiet: the queue limit is never reached). The log line of a ping
//     timeout says what the kernel tells (TCP_INFO, SIOCOUTQ): the peer never
//     received the ping (it reads too slowly), took no byte, or acknowledges
//     nothing (gone?).
//   - Protocol violations close only the offending client, with RFC 6455's
//     code (1002 framing, 1007 UTF-8, 1009 size).
//
// Plain sockets are written with MSG_NOSIGNAL, but OpenSSL's socket BIO uses
// write(2): with TLS the process must ignore SIGPIPE (shutdown::install()
// does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smws/auth/authenticator.h"
#include "smws/net/handshake.h"
#include "smws/net/http_routes.h"
#include "smws/net/send_queue.h"
#include "smws/net/upgrade_admission.h"
#include "smws/protocol.h"
#include "smws/status.h"

namespace smws::net {

using ClientId = uint64_t;

// The key per-address limits count a connection under. peer_address is the
// TCP peer's IP (no port); request is null at accept (the limit on
// handshakes in flight, before any byte was read) and the request head
// after it (the limit on open clients). "" exempts the connection from the
// per-address limit in question. The default (no function) is the peer
// address both times; behind a trusted proxy a tool returns the proxy's
// X-Forwarded-For entry for a request, and "" at accept for the proxy's
// own address (all its clients' handshakes share it).
using AddressKey = std::function<std::string(const std::string& peer_address,
                                             const HttpRequest* request)>;

struct ServerOptions {
  std::string host = protocol::kDefaultHost;
  uint16_t port = protocol::kDefaultPort;  // 0: the kernel picks; see bound_port()
  std::string path = protocol::kDefaultWsPath;
  // More WebSocket paths (ws-relay's --route); a client's ClientInfo says
  // which one it asked for (request.path).
  std::vector<std::string> extra_paths;
  size_t max_queue = protocol::kDefaultMaxQueue;  // data messages per client
  // Bytes of data messages per client (their encoded frames), what join()
  // queues first included; 0: no bound by bytes. ws-relay's default is
  // protocol::kDefaultMaxQueueBytes; a queue at or over it is full (so one
  // message larger than the bound still reaches a client that reads).
  size_t max_queue_bytes = 0;
  SlowClientPolicy slow_client = SlowClientPolicy::kDisconnect;
  // kDrop: the text of the message that stands for N dropped ones (required
  // with kDrop; open() refuses kDrop without it).
  DropNotice drop_notice;
  double ping_interval = protocol::kDefaultPingInterval;  // seconds; 0 disables pings
  double ping_timeout = protocol::kPingTimeoutFactor * protocol::kDefaultPingInterval;
  // When set, also queued as a data message with each ping (an application
  // keepalive for clients that cannot see WebSocket pings, e.g. browsers).
  std::function<std::string()> keepalive;
  size_t max_message = protocol::kDefaultMaxMessage;  // largest client message (1009 above)
  size_t max_clients = protocol::kDefaultMaxClients;  // open WebSocket clients (503 above)
  // Open WebSocket clients per address (address_key), 503 above; 0: none.
  size_t max_clients_per_address = 0;
  AddressKey address_key;  // empty: the peer's address
  // Host names answered besides the loopback ones (HostRule): on a
  // loopback `host` only localhost, 127.0.0.1, [::1] and these are; on
  // another, when given, only these. Others get 421 (DNS rebinding).
  std::vector<std::string> allow_hosts;
  std::vector<std::string> allow_origins;  // empty: same host only
  std::string token;                       // empty: no token required
  // Who a request is (ws-relay's --users, --jwt-*, --trusted-proxy:
  // smws::auth). When set, it is asked instead of `token` for every
  // upgrade that passes the RFC 6455, Origin and room checks, and for every
  // kToken route; a refusal is answered with its status (401/403) and
  // counted as RefusalReason::kToken. Loop thread.
  std::function<auth::AuthResult(const HttpRequest&)> authenticate;
  std::string tls_cert, tls_key;           // both set: wss/https
  // An HTTP request head or TLS handshake must complete within this (slowloris).
  double handshake_timeout = protocol::kHandshakeTimeout;
  // TCP connections still in their handshake, at most; one accepted above
  // this is closed at once (reasons: protocol::kMaxHandshaking).
  size_t max_handshaking = protocol::kMaxHandshaking;
  // ... from one address (address_key at accept); one above it gets 503
  // with Retry-After at once (plain TCP; with TLS it is closed at once: no
  // reply can be written before the TLS handshake). 0: no limit.
  size_t max_handshaking_per_address = protocol::kMaxHandshakingPerIp;
  // A close we sent must be taken (and answered) within this; the SPEC's 2 s.
  double close_timeout = protocol::kSlowClientCloseGrace;
};

// Counters, owned and written by the loop thread (read them there, e.g. from
// a route handler for /metrics).
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
  // Refused upgrades (4xx/5xx), and refusals of the server's own (421,
  // plain HTTP on the TLS port, handshakes per address), by reason
  // (indexed by RefusalReason).
  std::array<uint64_t, kRefusalReasons> refused_by_reason{};
  // Every HTTP answer the server wrote, by status: 101 for each upgrade,
  // the routes' replies, refusals, 400/426/431 for bad requests.
  std::map<int, uint64_t> http_status;
  uint64_t accepts_shed = 0;         // connections closed at accept: already
                                     // max_handshaking handshakes in flight
                                     // (or, from its address, that many
                                     // refused ones still closing)
  uint64_t accept_errors = 0;        // accept(2) failures for lack of
                                     // descriptors or memory (EMFILE ...)
  uint64_t writes_refused = 0;       // write calls that stopped at a full
                                     // socket buffer (short write, EAGAIN, TLS
                                     // WANT_*): a stalled client costs one
                                     // when it stalls, not one per event
};

// An upgrade request that was refused, or a request or connection the
// server refused on its own (kHost, kNotTls, kHandshakesPerAddress), for the
// tool to report it.
struct RefusedUpgrade {
  std::string peer;             // "ip:port"
  const HttpRequest* request;   // the refused request (null for kNotTls, kHandshakesPerAddress)
  RefusalReason reason;
  bool token_sent = false;      // kToken: a (wrong) token was sent
  int status = 0;               // the HTTP status answered
  std::string message;          // the reply's text ("origin not allowed: ...")
};

struct ClientInfo {
  ClientId id = 0;
  std::string peer;      // "ip:port"
  HttpRequest request;   // the upgrade request (query, headers)
  // What ServerOptions::authenticate said (admitted); without it, nothing:
  // the tool knows what its --token alone means.
  std::optional<auth::AuthResult> auth;
};

// Called on the loop thread only. Methods must not block.
class WsServerHandler {
 public:
  virtual ~WsServerHandler() = default;
  // A client completed its handshake. It receives what is send() to it, but
  // broadcasts only once join() is called for it (here or later).
  virtual void on_open(const ClientInfo& client) = 0;
  // A complete text (binary = false) or binary message from a client.
  virtual void on_message(ClientId id, std::string_view payload, bool binary) = 0;
  virtual void on_close(ClientId id) = 0;
  // wake() was called from some thread.
  virtual void on_wake() {}
  // Called every few hundred milliseconds (for the handler's own timeouts,
  // on its own clock).
  virtual void on_tick() {}
  // An upgrade request was refused (counted in ServerStats); the server
  // itself only notes it at -vv.
  virtual void on_refused(const RefusedUpgrade& refused) {}
};

class WsServer {
 public:
  WsServer(ServerOptions options, WsServerHandler* handler);
  ~WsServer();
  WsServer(const WsServer&) = delete;
  WsServer& operator=(const WsServer&) = delete;

  // Plain-HTTP routes (any path but options.path); register before run().
  // kToken routes need options.token. Answers are counted by status in
  // ServerStats::http_status.
  void route(std::string path, RouteHandler handler, RouteAccess access = RouteAccess::kPublic);

  // Loads TLS, binds and listens. On failure a Status whose code says what
  // failed (map it with exit_code_for): kNotFound a certificate or key that
  // cannot be read, kTls one that does not load, kPermission a port we may
  // not bind, kUsage inconsistent options, kCantCreate any other listen
  // failure ("cannot listen on 127.0.0.1:3002: Address already in use").
  Status open();
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
  // Queues one data message, held to max_queue and max_queue_bytes.
  SendStatus send(ClientId id, const Frame& frame);
  SendStatus send_text(ClientId id, std::string_view payload);
  // Adds an open client to the broadcast list. `first` is queued before any
  // broadcast and is not held to max_queue: it is what the client must have
  // before its stream starts (however many messages), so it cannot get the
  // client judged slow before it could read. It is held to max_queue_bytes
  // (as every message is: a queue at or over it is full): a first batch
  // larger than that is written out as it is queued, and a client that does
  // not take it is slow. Returns false for an unknown or closing client (or
  // one closed as slow while its first messages were queued).
  bool join(ClientId id, const std::vector<Frame>& first = {});
  // Queues the frame to every joined client. Returns how many queued it.
  size_t broadcast(const Frame& frame);
  // Starts a close handshake with one client (unsent data after the frame
  // being written is discarded): ws-relay's revoked or expired credentials.
  void close(ClientId id, uint16_t code, std::string_view reason);
  // Watches another fd (a tool's stdin) for readability: on_readable runs
  // on the loop thread, level-triggered (again on the next turn while the fd
  // stays readable, so read once per call). False when epoll cannot watch it
  // (a regular file): read it on a thread of its own then.
  bool watch(int fd, std::function<void()> on_readable);
  void unwatch(int fd);
  // Marks the client alive as if it answered a ping (application-level pong).
  void note_pong(ClientId id);
  // Stops accepting; every client gets its queued data then close 1001 and
  // has `seconds` to take it (but only the close grace to answer once the
  // 1001 is written); run() returns when all are gone.
  void begin_shutdown(double seconds);
  const ServerStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace smws::net
