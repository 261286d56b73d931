// SPDX-License-Identifier: Apache-2.0
#include "smws/net/ws_client.h"

#include "smws/ascii.h"
#include "smws/duration_text.h"
#include "smws/net/handshake.h"
#include "smws/net/permessage_deflate.h"
#include "smws/net/resolver.h"
#include "smws/utf8.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <Poco/Base64Encoder.h>
#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/X509Certificate.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sstream>

namespace smws::net {
namespace {

// The status code of an HTTP response head: the digits after the version
// ("HTTP/1.1 101 Switching Protocols" -> 101); 0 when there are none.
int status_code_of(const std::string& head) {
  size_t i = head.find_first_not_of(" \t");
  if (i == std::string::npos) return 0;
  i = head.find_first_of(" \t", i);  // the end of the version
  if (i == std::string::npos) return 0;
  i = head.find_first_not_of(" \t", i);
  int code = 0;
  for (int n = 0; n < 3 && i != std::string::npos && i < head.size() && head[i] >= '0' && head[i] <= '9'; ++n, ++i)
    code = code * 10 + (head[i] - '0');
  return code;
}

using Clock = WsClient::Clock;

// A response head larger than this is not a WebSocket server's answer;
// reading stops there instead of buffering without bound.
constexpr size_t kMaxResponseHead = 64 * 1024;
// Refusal bodies are shown to help the user; the start is enough.
constexpr size_t kMaxBodyExcerpt = 512;
// After the handshake a TLS read waits at most this long for the rest of a
// record whose first bytes poll() reported; it bounds how long one slow
// connection can hold up the caller's loop.
constexpr int kTlsRecordWaitMs = 1000;

std::string base64(const unsigned char* data, size_t size) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  encoder.close();
  return out.str();
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

bool header_has_token(std::string_view value, std::string_view token) {
  std::string v = ascii_lower(value);
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    std::string_view part(v.data() + start, (comma == std::string::npos ? v.size() : comma) - start);
    while (!part.empty() && std::isspace(static_cast<unsigned char>(part.front()))) part.remove_prefix(1);
    while (!part.empty() && std::isspace(static_cast<unsigned char>(part.back()))) part.remove_suffix(1);
    if (part == token) return true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return false;
}

void init_ssl_once() {
  static std::once_flag once;
  std::call_once(once, [] { Poco::Net::initializeSSL(); });
}

}  // namespace

// ---------------------------------------------------------------------------
// Transports: the socket under the WebSocket, plain or TLS. Both are driven by
// the caller's poll loop; reads never block longer than a TLS record wait.

class WsClient::Transport {
 public:
  virtual ~Transport() = default;
  virtual int fd() const = 0;
  virtual Io read(char* buf, size_t size, size_t* got, std::string* error) = 0;
  virtual bool pending() const { return false; }
  // Writes a prefix of [p, p+size); *wrote may be 0 when the socket is full.
  virtual bool write(const char* p, size_t size, size_t* wrote, std::string* error) = 0;
  virtual void shutdown_write() = 0;
  virtual void close() = 0;
};

// Plain TCP: POCO owns the socket, reads and writes are non-blocking syscalls
// so that FIN (0) and RST (ECONNRESET) are told apart exactly.
class WsClient::PlainTransport : public WsClient::Transport {
 public:
  explicit PlainTransport(Poco::Net::StreamSocket socket) : socket_(std::move(socket)) {}
  int fd() const override { return static_cast<int>(socket_.impl()->sockfd()); }

  Io read(char* buf, size_t size, size_t* got, std::string* error) override {
    for (;;) {
      ssize_t n = ::recv(fd(), buf, size, MSG_DONTWAIT);
      if (n > 0) {
        *got = static_cast<size_t>(n);
        return Io::kData;
      }
      if (n == 0) return Io::kEof;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWouldBlock;
      if (errno == ECONNRESET) return Io::kReset;
      *error = std::strerror(errno);
      return Io::kError;
    }
  }

  bool write(const char* p, size_t size, size_t* wrote, std::string* error) override {
    *wrote = 0;
    for (;;) {
      ssize_t n = ::send(fd(), p, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        *wrote = static_cast<size_t>(n);
        return true;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      *error = std::strerror(errno);
      return false;
    }
  }

  void shutdown_write() override { ::shutdown(fd(), SHUT_WR); }
  void close() override {
    try {
      socket_.close();
    } catch (const Poco::Exception&) {
    }
  }

 private:
  Poco::Net::StreamSocket socket_;
};

// TLS: POCO's SecureStreamSocket in blocking mode with short timeouts. It is
// only read when poll() says the fd is readable or OpenSSL holds decrypted
// bytes (pending()), so a read waits at most for the rest of one record.
class WsClient::TlsTransport : public WsClient::Transport {
 public:
  explicit TlsTransport(Poco::Net::SecureStreamSocket socket) : socket_(std::move(socket)) {}
  int fd() const override { return static_cast<int>(socket_.impl()->sockfd()); }

  void set_timeouts(int ms) {
    socket_.setReceiveTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms) * 1000));
    socket_.setSendTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(std::max(ms, 1000)) * 1000));
  }

  Io read(char* buf, size_t size, size_t* got, std::string* error) override {
    // Like the plain transport, never wait for bytes that have not arrived:
    // only read when OpenSSL holds some or the socket has some.
    if (!pending()) {
      pollfd p{fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return Io::kWouldBlock;
    }
    try {
      int n = socket_.receiveBytes(buf, static_cast<int>(size));
      if (n > 0) {
        *got = static_cast<size_t>(n);
        return Io::kData;
      }
      if (n == 0) return Io::kEof;  // close_notify, then FIN
      return Io::kWouldBlock;       // ERR_SSL_WANT_READ / WANT_WRITE
    } catch (const Poco::TimeoutException&) {
      return Io::kWouldBlock;
    } catch (const Poco::Net::ConnectionResetException&) {
      return Io::kReset;
    } catch (const Poco::Net::SSLConnectionUnexpectedlyClosedException&) {
      return Io::kEof;  // FIN without close_notify
    } catch (const Poco::Exception& e) {
      std::string text = ascii_lower(e.displayText());
      if (text.find("unexpected eof") != std::string::npos) return Io::kEof;
      if (text.find("reset") != std::string::npos) return Io::kReset;
      *error = e.displayText();
      return Io::kError;
    }
  }

  bool pending() const override {
    try {
      return const_cast<Poco::Net::SecureStreamSocket&>(socket_).available() > 0;
    } catch (const Poco::Exception&) {
      return false;
    }
  }

  bool write(const char* p, size_t size, size_t* wrote, std::string* error) override {
    *wrote = 0;
    try {
      int n = socket_.sendBytes(p, static_cast<int>(size));
      if (n > 0) *wrote = static_cast<size_t>(n);
      return true;
    } catch (const Poco::TimeoutException&) {
      return true;
    } catch (const Poco::Exception& e) {
      *error = e.displayText();
      return false;
    }
  }

  void shutdown_write() override {
    try {
      socket_.shutdownSend();
    } catch (const Poco::Exception&) {
    }
  }
  void close() override {
    try {
      socket_.close();
    } catch (const Poco::Exception&) {
    }
  }

 private:
  Poco::Net::SecureStreamSocket socket_;
};

// ---------------------------------------------------------------------------

std::optional<WsUrl> parse_ws_url(std::string_view url, std::string* error) {
  WsUrl out;
  out.text = std::string(url);
  std::string_view rest;
  std::string scheme_part;
  size_t sep = url.find("://");
  if (sep != std::string_view::npos) scheme_part = ascii_lower(url.substr(0, sep));
  if (scheme_part == "ws" || scheme_part == "http") {
    out.tls = false;
  } else if (scheme_part == "wss" || scheme_part == "https") {
    out.tls = true;
  } else {
    *error = "'" + std::string(url) + "' is not a ws:// or wss:// URL";
    return std::nullopt;
  }
  rest = url.substr(sep + 3);
  size_t path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (size_t hash = target.find('#'); hash != std::string::npos) target.erase(hash);
  if (target.empty() || target[0] == '?') target.insert(0, "/");
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      *error = "'" + std::string(url) + "': unterminated IPv6 address";
      return std::nullopt;
    }
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        *error = "'" + std::string(url) + "': bad host";
        return std::nullopt;
      }
      port_text = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) {
    *error = "'" + std::string(url) + "' has no host";
    return std::nullopt;
  }
  if (port_text.empty()) {
    out.port = out.tls ? 443 : 80;
  } else {
    unsigned long port = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || port > 65535) {
        port = 0;
        break;
      }
      port = port * 10 + static_cast<unsigned long>(c - '0');
    }
    if (port == 0 || port > 65535) {
      *error = "'" + std::string(url) + "': bad port '" + std::string(port_text) + "'";
      return std::nullopt;
    }
    out.port = static_cast<uint16_t>(port);
  }
  out.target = target;
  return out;
}

WsClient::WsClient()
    : reader_(ws::Role::kClient), mask_rng_(std::random_device{}()), started_(Clock::now()) {}

WsClient::~WsClient() { close(); }

double WsClient::since_start(Clock::time_point t) const {
  return std::chrono::duration<double>(t - started_).count();
}

int WsClient::fd() const { return transport_ ? transport_->fd() : -1; }

HandshakeInfo WsClient::open(const WsUrl& url, const WsClientOptions& options) {
  HandshakeInfo info;
  reader_ = ws::FrameReader(ws::Role::kClient, options.max_message);
  inflater_.reset();
  max_message_ = options.max_message;
  inflate_error_code_ = 0;
  inflate_error_.clear();
  out_.clear();
  out_pos_ = 0;
  transport_.reset();

  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options.connect_timeout_s));

  // DNS: bounded by the same --connect-timeout as the rest (smws/net/resolver.h:
  // POCO's resolver has no timeout); a failure or a timeout is "unreachable".
  const auto dns_start = Clock::now();
  std::string numeric;
  Status resolved = resolve_host(url.host, options.connect_timeout_s, &numeric);
  Poco::Net::SocketAddress address;
  if (resolved.ok()) {
    try {
      address = Poco::Net::SocketAddress(numeric, url.port);
    } catch (const Poco::Exception& e) {
      resolved = Status::Error(Status::kUnavailable, "cannot use address " + numeric + ": " + e.displayText());
    }
  }
  if (!resolved.ok()) {
    started_ = Clock::now();
    info.error = resolved.message;
    return info;
  }
  info.peer = address.toString();

  started_ = Clock::now();
  info.resolve_ms = ms_between(dns_start, started_);
  // The lookup's time counts against the limit: DNS + TCP + TLS + upgrade
  // together take at most --connect-timeout.
  const auto deadline = dns_start + timeout;
  const double connect_left_s = std::max(0.001, std::chrono::duration<double>(deadline - started_).count());
  Poco::Net::StreamSocket socket;
  try {
    socket.connect(address, Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(connect_left_s * 1e6)));
  } catch (const Poco::TimeoutException&) {
    info.error = "TCP connect to " + info.peer + " timed out after " + duration_text(options.connect_timeout_s);
    return info;
  } catch (const Poco::Exception& e) {
    info.error = "TCP connect to " + info.peer + " failed: " + e.displayText();
    return info;
  }
  const auto connected = Clock::now();
  info.connect_ms = ms_between(started_, connected);
  try {
    socket.setNoDelay(true);  // pongs and small messages must not wait for Nagle
  } catch (const Poco::Exception&) {
  }

  auto timed_out = [&] { return Clock::now() >= deadline; };

  // TLS (blocking, with the remaining time as socket timeouts).
  std::unique_ptr<Transport> transport;
  TlsTransport* tls = nullptr;
  if (url.tls) {
    init_ssl_once();
    try {
      int left = std::max(1, remaining_ms(deadline));
      socket.setReceiveTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(left) * 1000));
      socket.setSendTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(left) * 1000));
      Poco::Net::Context::Ptr context = new Poco::Net::Context(
          Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
          options.insecure ? Poco::Net::Context::VERIFY_NONE : Poco::Net::Context::VERIFY_RELAXED, 9, true,
          "ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH");
      if (options.insecure) context->enableExtendedCertificateVerification(false);
      auto secure = Poco::Net::SecureStreamSocket::attach(socket, url.host, context);
      info.tls_ms = ms_between(connected, Clock::now());
      try {
        // The server certificate's notAfter (for probe_ssl_earliest_cert_expiry).
        info.cert_expiry_unix = static_cast<double>(secure.peerCertificate().expiresOn().timestamp().epochTime());
      } catch (const Poco::Exception&) {
      }
      auto owned = std::make_unique<TlsTransport>(std::move(secure));
      tls = owned.get();
      transport = std::move(owned);
    } catch (const Poco::Exception& e) {
      info.outcome = timed_out() ? HandshakeInfo::Outcome::kTimeout : HandshakeInfo::Outcome::kUnreachable;
      info.error = "TLS handshake with " + url.host + " failed: " + e.displayText();
      if (!options.insecure && info.outcome == HandshakeInfo::Outcome::kUnreachable)
        info.error += " (--insecure skips certificate checks)";
      return info;
    }
  } else {
    transport = std::make_unique<PlainTransport>(socket);
  }

  // The upgrade request: POCO writes it; -H replaces defaults of the same name.
  unsigned char key_bytes[16];
  for (auto& b : key_bytes) b = static_cast<unsigned char>(mask_rng_());
  Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, url.target, Poco::Net::HTTPMessage::HTTP_1_1);
  request.setHost(url.host, url.port);
  request.set("Upgrade", "websocket");
  request.set("Connection", "Upgrade");
  request.set("Sec-WebSocket-Key", base64(key_bytes, sizeof key_bytes));
  request.set("Sec-WebSocket-Version", "13");
  request.set("User-Agent", "ws-probe");
  if (!options.origin.empty()) request.set("Origin", options.origin);
  // permessage-deflate without parameters: the server may compress what it
  // sends; the client sends uncompressed messages, which RFC 7692 allows.
  if (options.offer_deflate) request.set("Sec-WebSocket-Extensions", "permessage-deflate");
  if (!options.subprotocols.empty()) {
    std::string list;
    for (const auto& p : options.subprotocols) list += (list.empty() ? "" : ", ") + p;
    request.set("Sec-WebSocket-Protocol", list);
  }
  for (const auto& [name, value] : options.headers) request.set(name, value);
  const std::string key = request.get("Sec-WebSocket-Key");
  std::ostringstream head;
  request.write(head);
  info.request_head = head.str();

  auto fail = [&](HandshakeInfo::Outcome outcome, std::string error) {
    info.outcome = outcome;
    info.error = std::move(error);
    transport->close();
    return info;
  };

  // Send the request within the deadline.
  const std::string& bytes = info.request_head;
  size_t sent = 0;
  std::string io_error;
  while (sent < bytes.size()) {
    if (timed_out()) return fail(HandshakeInfo::Outcome::kTimeout, "sending the upgrade request timed out");
    size_t wrote = 0;
    if (!transport->write(bytes.data() + sent, bytes.size() - sent, &wrote, &io_error))
      return fail(HandshakeInfo::Outcome::kUnreachable, "sending the upgrade request failed: " + io_error);
    sent += wrote;
    if (wrote == 0) {
      pollfd p{transport->fd(), POLLOUT, 0};
      ::poll(&p, 1, std::min(remaining_ms(deadline), 100));
    }
  }

  // Read the response head.
  std::string response;
  size_t head_end = std::string::npos;
  char buf[16384];
  while (head_end == std::string::npos) {
    if (timed_out()) {
      const std::string limit = " within " + duration_text(options.connect_timeout_s);
      return fail(HandshakeInfo::Outcome::kTimeout,
                  (response.empty() ? std::string("no response to the upgrade request")
                                    : "incomplete response head (" + std::to_string(response.size()) + " bytes)") +
                      limit);
    }
    if (!transport->pending()) {
      pollfd p{transport->fd(), POLLIN, 0};
      int ready = ::poll(&p, 1, std::min(remaining_ms(deadline), 100));
      if (ready <= 0) continue;
    }
    if (tls) tls->set_timeouts(std::max(1, remaining_ms(deadline)));
    size_t got = 0;
    Io io = transport->read(buf, sizeof buf, &got, &io_error);
    if (io == Io::kWouldBlock) continue;
    if (io != Io::kData) {
      std::string what = io == Io::kEof ? "closed the connection (FIN)" : io == Io::kReset ? "reset the connection (RST)" : io_error;
      auto outcome = response.empty() ? HandshakeInfo::Outcome::kUnreachable : HandshakeInfo::Outcome::kRefused;
      if (!response.empty()) {
        // A status line may still be there: report it below with the error.
        head_end = response.size();
        info.error = "the server " + what + " in the middle of its response";
        break;
      }
      return fail(outcome, "the server " + what + " without answering the upgrade request");
    }
    response.append(buf, got);
    head_end = response.find("\r\n\r\n");
    if (head_end != std::string::npos) head_end += 4;
    if (head_end == std::string::npos && response.size() > kMaxResponseHead)
      return fail(HandshakeInfo::Outcome::kRefused, "response head larger than 64 KiB");
  }
  info.handshake_ms = ms_between(connected, Clock::now());

  // Parse it with POCO.
  Poco::Net::HTTPResponse parsed;
  try {
    std::istringstream in(response.substr(0, head_end));
    parsed.read(in);
  } catch (const Poco::Exception& e) {
    std::string first_line = response.substr(0, std::min(response.find("\r\n"), size_t{80}));
    return fail(HandshakeInfo::Outcome::kRefused, "not an HTTP response (" + e.displayText() + "): '" + first_line + "'");
  }
  // The code is read from the status line POCO has just accepted, not with
  // getStatus(): that returns POCO's HTTPStatus enum, and loading a code the
  // enum lacks ("HTTP/1.1 901 ...") is undefined behaviour (found by
  // fuzz_probe_response).
  info.status = status_code_of(response);
  info.reason_phrase = parsed.getReason();
  info.status_line = parsed.getVersion() + " " + std::to_string(info.status) + " " + info.reason_phrase;
  for (const auto& [name, value] : parsed) info.headers.emplace_back(name, value);
  std::string leftover = response.substr(std::min(head_end, response.size()));
  if (!info.error.empty()) return fail(HandshakeInfo::Outcome::kRefused, info.error);

  if (info.status != 101) {
    info.body = leftover.substr(0, kMaxBodyExcerpt);
    std::string what = "HTTP " + std::to_string(info.status) + " " + info.reason_phrase;
    if (parsed.has("Location")) what += ", Location: " + parsed.get("Location");  // a redirect: where to
    return fail(HandshakeInfo::Outcome::kRefused, what);
  }
  if (!parsed.has("Upgrade") || ascii_lower(parsed.get("Upgrade")) != "websocket") {
    return fail(HandshakeInfo::Outcome::kRefused,
                parsed.has("Upgrade") ? "101 with 'Upgrade: " + parsed.get("Upgrade") + "' instead of websocket"
                                      : "101 without an 'Upgrade: websocket' header");
  }
  if (!parsed.has("Connection") || !header_has_token(parsed.get("Connection"), "upgrade")) {
    return fail(HandshakeInfo::Outcome::kRefused, "101 without 'Connection: Upgrade'");
  }
  const std::string want = websocket_accept_key(key);
  if (!parsed.has("Sec-WebSocket-Accept")) {
    return fail(HandshakeInfo::Outcome::kRefused, "101 without Sec-WebSocket-Accept");
  }
  if (parsed.get("Sec-WebSocket-Accept") != want) {
    return fail(HandshakeInfo::Outcome::kRefused, "wrong Sec-WebSocket-Accept '" + parsed.get("Sec-WebSocket-Accept") +
                                                      "' (expected '" + want + "')");
  }
  if (parsed.has("Sec-WebSocket-Protocol")) {
    info.subprotocol = parsed.get("Sec-WebSocket-Protocol");
    if (std::find(options.subprotocols.begin(), options.subprotocols.end(), info.subprotocol) ==
        options.subprotocols.end()) {
      return fail(HandshakeInfo::Outcome::kRefused,
                  "the server chose subprotocol '" + info.subprotocol + "', which the client did not offer");
    }
  }
  if (parsed.has("Sec-WebSocket-Extensions")) info.extensions = parsed.get("Sec-WebSocket-Extensions");
  if (!info.extensions.empty()) {
    // RFC 6455 §9.1 and RFC 7692 §5: an extension the client did not offer,
    // or a permessage-deflate response it cannot accept, fails the
    // connection. Browsers do the same (the page sees 1006).
    if (!options.offer_deflate) {
      return fail(HandshakeInfo::Outcome::kRefused,
                  "the server's 101 names 'Sec-WebSocket-Extensions: " + info.extensions +
                      "', which the client did not offer (RFC 7692 §5: the client fails the connection)");
    }
    std::string why;
    auto params = parse_permessage_deflate(info.extensions, &why);
    if (!params) {
      return fail(HandshakeInfo::Outcome::kRefused, "the server's 101 answers the permessage-deflate offer with '" +
                                                        info.extensions + "': " +
                                                        (why.empty() ? std::string("not permessage-deflate") : why) +
                                                        " (RFC 7692 §5: the client fails the connection)");
    }
    inflater_ = std::make_unique<Inflater>(*params);
    reader_.allow_compressed(true);
  }

  if (tls) tls->set_timeouts(kTlsRecordWaitMs);
  transport_ = std::move(transport);
  reader_.feed(leftover);  // frames the server sent together with its 101
  info.outcome = HandshakeInfo::Outcome::kOpen;
  return info;
}

ws::FrameReader::Status WsClient::next(ws::Message* out) {
  if (inflate_error_code_ != 0) return ws::FrameReader::Status::kError;
  auto status = reader_.next(out);
  if (status != ws::FrameReader::Status::kMessage || !out->compressed || !inflater_) return status;
  std::string inflated, error;
  const auto result = inflater_->inflate(out->payload, max_message_, &inflated, &error);
  if (result != Inflater::Result::kOk) {
    inflate_error_code_ = result == Inflater::Result::kTooBig ? ws::kCloseMessageTooBig : ws::kCloseInvalidPayload;
    inflate_error_ = "permessage-deflate: " + error;
    return ws::FrameReader::Status::kError;
  }
  if (out->opcode == ws::Opcode::kText && !is_valid_utf8(inflated)) {
    inflate_error_code_ = ws::kCloseInvalidPayload;
    inflate_error_ = "inflated text message is not valid UTF-8";
    return ws::FrameReader::Status::kError;
  }
  out->payload = std::move(inflated);
  return status;
}

WsClient::Io WsClient::read_some(std::string* error) {
  if (!transport_) return Io::kEof;
  // On the heap, not the stack: -fstack-clash-protection probes every page
  // of a 64 KiB frame, which would make each thread that reads (one per
  // ws-probe --watch) hold 64 KiB; new char[] leaves untouched pages unbacked.
  if (!read_buf_) read_buf_.reset(new char[kReadBuf]);
  size_t got = 0;
  Io io = transport_->read(read_buf_.get(), kReadBuf, &got, error);
  if (io == Io::kData) reader_.feed(read_buf_.get(), got);
  return io;
}

bool WsClient::has_pending() const { return transport_ && transport_->pending(); }

size_t WsClient::send(ws::Opcode op, std::string_view payload) {
  uint8_t mask[4];
  uint32_t r = mask_rng_();
  std::memcpy(mask, &r, sizeof mask);
  size_t before = out_.size();
  ws::append_frame(&out_, op, payload, true, mask);
  return out_.size() - before;
}

size_t WsClient::send_close(uint16_t code, std::string_view reason) {
  return send(ws::Opcode::kClose, ws::close_payload(code, reason));
}

bool WsClient::flush(std::string* error) {
  if (!transport_) return false;
  while (out_pos_ < out_.size()) {
    size_t wrote = 0;
    if (!transport_->write(out_.data() + out_pos_, out_.size() - out_pos_, &wrote, error)) {
      out_.clear();
      out_pos_ = 0;
      return false;
    }
    if (wrote == 0) break;
    out_pos_ += wrote;
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > (1 << 20)) {
    out_.erase(0, out_pos_);  // keep the queue from growing by its written prefix
    out_pos_ = 0;
  }
  return true;
}

void WsClient::shutdown_write() {
  if (transport_) transport_->shutdown_write();
}

void WsClient::close() {
  if (transport_) {
    transport_->close();
    transport_.reset();
  }
}

}  // namespace smws::net
