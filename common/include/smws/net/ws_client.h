// SPDX-License-Identifier: Apache-2.0
// A small WebSocket client connection for tools that must see every frame as
// it arrives (ws-probe, hitl-approve): POCO resolves, connects (with a
// timeout) and does TLS; the upgrade request is written and checked here, so
// a refusal (any status, a missing Upgrade header, a wrong
// Sec-WebSocket-Accept) is reported as data instead of a POCO exception.
// After the handshake the caller drives the socket from its own poll loop:
// read_some() when fd() is readable (or has_pending() says TLS holds bytes),
// next() to take decoded frames out of the shared codec (smws/ws_frame.h),
// send() to queue frames and flush() when fd() is writable.
//
// Why not Poco::Net::WebSocket: in POCO 1.11 it answers neither pings nor
// close frames, throws on a refused handshake before the response can be
// inspected, and corrupts the stream when two threads send.
//
// Threads: a WsClient is used by one thread at a time (no internal locking).
// ws-probe drives it from its own poll loop; hitl-approve through
// WsClientThread (ws_client_thread.h), whose reader thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "smws/ws_frame.h"

namespace smws::net {

class Inflater;

using Headers = std::vector<std::pair<std::string, std::string>>;

struct WsUrl {
  bool tls = false;
  std::string host;    // without brackets for IPv6
  uint16_t port = 0;
  std::string target;  // path plus query, "/" at least
  std::string text;    // the URL as given
};

// ws://, wss:// (http:// and https:// are taken as ws:// and wss://).
// nullopt and *error ("... is not a ws:// or wss:// URL") on anything else.
std::optional<WsUrl> parse_ws_url(std::string_view url, std::string* error);

struct WsClientOptions {
  Headers headers;                     // -H: added to (or replacing) the defaults
  std::string origin;                  // --origin: sent as Origin when not empty
  std::vector<std::string> subprotocols;
  bool insecure = false;               // TLS without certificate or host checks
  double connect_timeout_s = 10;       // TCP connect + TLS + HTTP upgrade together
  size_t max_message = 16 << 20;       // largest message accepted from the server
  // Offer permessage-deflate (RFC 7692) and inflate what the server
  // compresses. Without the offer, a 101 that names any extension is
  // refused (kRefused): the client fails the connection as the RFC says.
  bool offer_deflate = false;
};

struct HandshakeInfo {
  enum class Outcome {
    kOpen,         // 101 with a valid accept key: frames may flow
    kUnreachable,  // DNS, TCP connect or TLS setup failed
    kTimeout,      // TCP connected but no complete answer within the timeout
    kRefused,      // an answer that is not a valid upgrade
  };
  Outcome outcome = Outcome::kUnreachable;
  std::string error;            // why it is not open, in words a user can act on
  std::string peer;             // "ip:port" that was connected to
  double resolve_ms = -1;       // DNS lookup (0 for a numeric host)
  double connect_ms = -1;       // TCP connect (DNS excluded)
  double handshake_ms = -1;     // from TCP connected to the end of the response head
  double tls_ms = -1;           // the TLS part of handshake_ms (wss:// only)
  double cert_expiry_unix = 0;  // wss://: the server certificate's notAfter (epoch seconds), 0 if unknown
  int status = 0;               // HTTP status, 0 when none was parsed
  std::string reason_phrase;
  std::string status_line;      // "HTTP/1.1 101 Switching Protocols"
  std::string request_head;     // what was sent, for -v
  Headers headers;              // response headers in order
  std::string subprotocol;      // Sec-WebSocket-Protocol chosen by the server
  std::string extensions;       // Sec-WebSocket-Extensions of the 101 (offered or not)
  std::string body;             // the start of a refusal's body (<= 512 bytes)
};

class WsClient {
 public:
  using Clock = std::chrono::steady_clock;

  WsClient();
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Blocking, bounded by options.connect_timeout_s: resolve, connect, TLS,
  // upgrade. started() is the moment before the TCP connect, the origin of
  // every timestamp a tool reports.
  HandshakeInfo open(const WsUrl& url, const WsClientOptions& options);

  Clock::time_point started() const { return started_; }
  double since_start(Clock::time_point t) const;

  int fd() const;
  bool is_open() const { return transport_ != nullptr; }

  enum class Io { kData, kWouldBlock, kEof, kReset, kError };
  // One read from the socket into the frame reader. kEof: the peer's FIN
  // (or a TLS close); kReset: ECONNRESET (RST); kError: other errno, in *error.
  Io read_some(std::string* error);
  // TLS may hold decrypted bytes that poll() cannot see: read_some() again.
  bool has_pending() const;

  // Decoded frames; see ws::FrameReader (client role). When the client
  // offered permessage-deflate and the server accepted it, compressed
  // messages come out inflated (smws/net/permessage_deflate.h).
  ws::FrameReader::Status next(ws::Message* out);
  const ws::FrameReader& reader() const { return reader_; }
  // After next() said kError: the close code and reason, the reader's or the
  // inflater's (1007 corrupt data, 1009 inflates past max_message).
  uint16_t error_code() const { return inflate_error_code_ ? inflate_error_code_ : reader_.error_code(); }
  const std::string& error_reason() const {
    return inflate_error_code_ ? inflate_error_ : reader_.error_reason();
  }
  // True when messages are inflated (permessage-deflate was in the 101).
  bool inflating() const { return inflater_ != nullptr; }

  // Queues one masked frame. Returns the frame's size on the wire.
  size_t send(ws::Opcode op, std::string_view payload);
  size_t send_close(uint16_t code, std::string_view reason);
  // Writes as much of the queue as the socket takes. False on a write error
  // (*error says why); the queue is then dropped.
  bool flush(std::string* error);
  size_t queued() const { return out_.size() - out_pos_; }

  // Half-close (our FIN) and full close; both idempotent.
  void shutdown_write();
  void close();

 private:
  class Transport;
  class PlainTransport;
  class TlsTransport;

  std::unique_ptr<Transport> transport_;
  ws::FrameReader reader_;
  std::unique_ptr<Inflater> inflater_;  // set when permessage-deflate was offered and accepted
  size_t max_message_ = 16 << 20;       // options.max_message, for inflated sizes
  uint16_t inflate_error_code_ = 0;
  std::string inflate_error_;
  static constexpr size_t kReadBuf = 65536;
  std::unique_ptr<char[]> read_buf_;  // read_some()'s buffer, allocated on first use
  std::string out_;       // queued wire bytes; [out_pos_, end) not yet written
  size_t out_pos_ = 0;
  std::mt19937 mask_rng_;
  Clock::time_point started_;
};

}  // namespace smws::net
