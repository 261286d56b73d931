// The reader thread and the serialised sender of hitl-approve's connection.
#include "connection.h"

#include <fcntl.h>
#include <unistd.h>

#include <Poco/Buffer.h>
#include <Poco/Exception.h>
#include <Poco/Net/AcceptCertificateHandler.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/WebSocket.h>
#include <Poco/URI.h>

#include <cerrno>
#include <string_view>

#include "smws/log.h"

namespace smws::hitl_approve {

using Poco::Net::WebSocket;
using nlohmann::json;

namespace {

// The reader polls the socket for this long between checks of stop_, so
// close() and the destructor return within it.
constexpr long kReadPollMicros = 200 * 1000;

// Once a frame has started, its rest must arrive within this time; a peer
// stalled mid-frame for longer is treated as a lost connection.
constexpr long kFrameTimeoutSeconds = 30;

// A frame we send waits at most this long for room in the socket buffer.
constexpr long kSendTimeoutSeconds = 10;

// The largest message taken from the relay: a snapshot with many machines
// and pending interrupts is the big one; 64 MiB is far above it.
constexpr int kMaxPayload = 64 << 20;

// Types the UI needs; the rest of the event stream is dropped here.
bool wanted(const std::string& type) {
  return type == "initial" || type == "interrupt" || type == "decision" || type == "error" ||
         type == "gap" || type == "dropped";
}

// The relay sends every event to every client, thousands a second, and a
// client that falls behind is closed (1013). Most are of no interest here:
// a message whose text contains none of the wanted type names (nor "ping",
// nor a \u escape that could spell one) cannot be one of them, so it is
// dropped without parsing it.
bool may_be_wanted(const char* data, std::size_t size) {
  std::string_view text(data, size);
  for (std::string_view word : {"\"initial\"", "\"interrupt\"", "\"decision\"", "\"error\"",
                                "\"gap\"", "\"dropped\"", "\"ping\"", "\\u"})
    if (text.find(word) != std::string_view::npos) return true;
  return false;
}

void init_ssl_once(bool insecure) {
  static std::once_flag once;
  std::call_once(once, [insecure] {
    Poco::Net::initializeSSL();
    Poco::SharedPtr<Poco::Net::InvalidCertificateHandler> handler;
    if (insecure) handler = new Poco::Net::AcceptCertificateHandler(false);
    else handler = new Poco::Net::RejectCertificateHandler(false);
    Poco::Net::Context::Ptr context = new Poco::Net::Context(
        Poco::Net::Context::TLS_CLIENT_USE, "",
        insecure ? Poco::Net::Context::VERIFY_NONE : Poco::Net::Context::VERIFY_RELAXED, 9, true);
    Poco::Net::SSLManager::instance().initializeClient(nullptr, handler, context);
  });
}

}  // namespace

std::unique_ptr<Connection> Connection::open(const ConnectOptions& options, ConnectResult* result) {
  *result = {};
  std::unique_ptr<Connection> conn(new Connection());
  Poco::URI uri;
  try {
    uri = Poco::URI(options.url);
  } catch (const Poco::Exception& e) {
    *result = {ConnectResult::kBadUrl, options.url + ": not a URL: " + e.message()};
    return nullptr;
  }
  std::string scheme = uri.getScheme();
  bool tls = scheme == "wss" || scheme == "https";
  if (!tls && scheme != "ws" && scheme != "http") {
    *result = {ConnectResult::kBadUrl, options.url + " is not a ws:// or wss:// URL"};
    return nullptr;
  }
  if (uri.getHost().empty()) {
    *result = {ConnectResult::kBadUrl, options.url + " has no host"};
    return nullptr;
  }
  // URI knows the default ports of http/https; ws/wss map to the same.
  Poco::UInt16 port = uri.getPort();
  if (port == 0) port = tls ? 443 : 80;
  std::string target = uri.getPathEtc().empty() ? "/" : uri.getPathEtc();
  auto timeout = Poco::Timespan(static_cast<long>(options.connect_timeout),
                                static_cast<long>((options.connect_timeout - static_cast<long>(options.connect_timeout)) * 1e6));
  Poco::Net::HTTPResponse response;
  try {
    if (tls) {
      init_ssl_once(options.insecure);
      conn->session_ = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), port);
    } else {
      conn->session_ = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), port);
    }
    conn->session_->setTimeout(timeout, timeout, timeout);
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, target,
                                   Poco::Net::HTTPRequest::HTTP_1_1);
    if (!options.token.empty()) request.set("Authorization", "Bearer " + options.token);
    conn->socket_ = std::make_unique<WebSocket>(*conn->session_, request, response);
  } catch (const Poco::Net::WebSocketException& e) {
    int status = response.getStatus();
    bool denied = status == 401 || status == 403 || e.code() == WebSocket::WS_ERR_UNAUTHORIZED;
    std::string why = "handshake refused";
    if (status != 0 && status != 200) why += " with HTTP " + std::to_string(status) + " " + response.getReason();
    else why += ": " + e.message();
    *result = {denied ? ConnectResult::kDenied : ConnectResult::kUnavailable, options.url + ": " + why};
    return nullptr;
  } catch (const Poco::TimeoutException&) {
    *result = {ConnectResult::kUnavailable, options.url + ": timed out after " +
                                                std::to_string(options.connect_timeout).substr(0, 4) + " s"};
    return nullptr;
  } catch (const Poco::Exception& e) {
    *result = {ConnectResult::kUnavailable, options.url + ": " + e.displayText()};
    return nullptr;
  } catch (const std::exception& e) {
    *result = {ConnectResult::kUnavailable, options.url + ": " + e.what()};
    return nullptr;
  }
  conn->socket_->setMaxPayloadSize(kMaxPayload);
  conn->socket_->setReceiveTimeout(Poco::Timespan(kFrameTimeoutSeconds, 0));
  conn->socket_->setSendTimeout(Poco::Timespan(kSendTimeoutSeconds, 0));
  try {
    conn->local_address_ = conn->socket_->address().toString();
  } catch (const Poco::Exception&) {
  }
  if (::pipe2(conn->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    *result = {ConnectResult::kUnavailable, std::string("pipe: ") + log::errno_text(errno)};
    return nullptr;
  }
  conn->reader_ = std::thread([c = conn.get()] { c->read_loop(); });
  return conn;
}

Connection::~Connection() {
  close();
  if (reader_.joinable()) reader_.join();
  for (int fd : wake_pipe_)
    if (fd >= 0) ::close(fd);
}

bool Connection::send_frame(const void* data, int size, int flags, std::string& error) {
  std::lock_guard<std::mutex> lock(send_mutex_);
  if (closed_sent_) {
    error = "connection is closed";
    return false;
  }
  try {
    socket_->sendFrame(data, size, flags);
    return true;
  } catch (const Poco::Exception& e) {
    error = e.displayText();
  } catch (const std::exception& e) {
    error = e.what();
  }
  return false;
}

bool Connection::send_text(const std::string& text, std::string& error) {
  return send_frame(text.data(), static_cast<int>(text.size()), WebSocket::FRAME_TEXT, error);
}

void Connection::close() {
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    if (!closed_sent_ && socket_) {
      closed_sent_ = true;
      try {
        socket_->shutdown(WebSocket::WS_NORMAL_CLOSE, "");
      } catch (const Poco::Exception&) {
        // The peer is gone already: nothing left to tell it.
      }
    }
  }
  stop_ = true;
}

void Connection::post(Inbound item) {
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (inbox_.size() >= kMaxInbox && item.kind == Inbound::kMessage) {
      overflow_ = true;
      return;
    }
    inbox_.push_back(std::move(item));
  }
  char byte = 1;
  // A full pipe already wakes the reader of wake_fd(); EAGAIN is fine.
  [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &byte, 1);
}

std::deque<Inbound> Connection::take() {
  char drain[256];
  while (::read(wake_pipe_[0], drain, sizeof(drain)) > 0) {
  }
  std::lock_guard<std::mutex> lock(inbox_mutex_);
  std::deque<Inbound> out;
  out.swap(inbox_);
  return out;
}

bool Connection::take_overflow() {
  std::lock_guard<std::mutex> lock(inbox_mutex_);
  bool was = overflow_;
  overflow_ = false;
  return was;
}

void Connection::read_loop() {
  Poco::Buffer<char> frame(0);
  std::string message;  // a text message being reassembled from fragments
  std::string why;
  while (!stop_) {
    try {
      // TLS and POCO's handshake read-ahead may hold bytes poll() cannot see.
      if (socket_->available() <= 0 &&
          !socket_->poll(Poco::Timespan(0, kReadPollMicros), Poco::Net::Socket::SELECT_READ |
                                                               Poco::Net::Socket::SELECT_ERROR))
        continue;
      int flags = 0;
      frame.resize(0);
      int n = socket_->receiveFrame(frame, flags);
      int opcode = flags & WebSocket::FRAME_OP_BITMASK;
      if (n == 0 && flags == 0) {
        why = "the relay closed the connection without a close frame";
        break;
      }
      if (opcode == WebSocket::FRAME_OP_PING) {
        std::string error;
        if (!send_frame(frame.begin(), n, WebSocket::FRAME_FLAG_FIN | WebSocket::FRAME_OP_PONG, error)) {
          why = "cannot answer a ping: " + error;
          break;
        }
        continue;
      }
      if (opcode == WebSocket::FRAME_OP_PONG) continue;
      if (opcode == WebSocket::FRAME_OP_CLOSE) {
        int code = n >= 2 ? (static_cast<unsigned char>(frame[0]) << 8) | static_cast<unsigned char>(frame[1])
                          : 1005;
        std::string reason = n > 2 ? std::string(frame.begin() + 2, n - 2) : std::string();
        why = "the relay closed the connection (" + std::to_string(code) +
              (reason.empty() ? "" : " " + reason) + ")";
        {
          // Echo the close as RFC 6455 asks, unless we started the closing.
          std::lock_guard<std::mutex> lock(send_mutex_);
          if (!closed_sent_) {
            closed_sent_ = true;
            try {
              socket_->sendFrame(frame.begin(), n >= 2 ? 2 : 0, WebSocket::FRAME_FLAG_FIN | WebSocket::FRAME_OP_CLOSE);
            } catch (const Poco::Exception&) {
            }
          }
        }
        break;
      }
      if (opcode == WebSocket::FRAME_OP_TEXT || opcode == WebSocket::FRAME_OP_BINARY) message.clear();
      message.append(frame.begin(), n);
      if (!(flags & WebSocket::FRAME_FLAG_FIN)) continue;
      if (!may_be_wanted(message.data(), message.size())) {
        message.clear();
        continue;
      }
      json parsed = json::parse(message, nullptr, false);
      message.clear();
      if (!parsed.is_object() || !parsed.contains("type") || !parsed["type"].is_string()) continue;
      const std::string& type = parsed["type"].get_ref<const std::string&>();
      if (type == "ping") {
        std::string pong = R"({"type":"pong"})", error;
        send_text(pong, error);
        continue;
      }
      if (!wanted(type)) continue;
      post(Inbound{Inbound::kMessage, std::move(parsed), {}});
    } catch (const Poco::TimeoutException&) {
      why = "the relay stalled in the middle of a frame";
      break;
    } catch (const Poco::Exception& e) {
      why = e.displayText();
      break;
    } catch (const std::exception& e) {
      why = e.what();
      break;
    }
  }
  if (!stop_) post(Inbound{Inbound::kClosed, {}, why.empty() ? "connection lost" : why});
}

}  // namespace smws::hitl_approve
