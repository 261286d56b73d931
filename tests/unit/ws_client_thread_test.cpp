// SPDX-License-Identifier: Apache-2.0
// smws/net/ws_client_thread.h against a minimal WebSocket server written
// here on a loopback socket, so each test controls every frame it sends.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "smws/net/handshake.h"
#include "smws/net/ws_client_thread.h"
#include "smws/ws_frame.h"

using smws::net::WsClientThread;
using smws::net::WsInbound;
namespace ws = smws::ws;
using namespace std::chrono_literals;

namespace {

// Every wait here is bounded by this (a broken client fails, never hangs).
constexpr int kWaitMs = 5000;

// One server-side connection at a time, driven by the test's thread.
class FakeServer {
 public:
  FakeServer() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 4) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
  }
  ~FakeServer() {
    if (conn_ >= 0) ::close(conn_);
    ::close(listener_);
  }

  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/ws"; }

  // Accepts one connection and answers its upgrade with a valid 101. Runs on
  // a helper thread while the client's open() blocks; returns the request.
  std::string accept_upgrade() {
    pollfd p{listener_, POLLIN, 0};
    if (::poll(&p, 1, kWaitMs) != 1) return {};
    conn_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd c{conn_, POLLIN, 0};
      if (::poll(&c, 1, kWaitMs) != 1) return {};
      ssize_t n = ::read(conn_, buffer, sizeof buffer);
      if (n <= 0) return {};
      request.append(buffer, static_cast<size_t>(n));
    }
    std::string key_header = "Sec-WebSocket-Key: ";
    size_t at = request.find(key_header);
    if (at == std::string::npos) return {};
    size_t end = request.find("\r\n", at);
    std::string key = request.substr(at + key_header.size(), end - at - key_header.size());
    write_all("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " + smws::net::websocket_accept_key(key) + "\r\n\r\n");
    return request;
  }

  void send(ws::Opcode op, std::string_view payload) { write_all(ws::encode_frame(op, payload)); }
  // Closes the TCP connection without a close frame (FIN).
  void hang_up() {
    ::close(conn_);
    conn_ = -1;
  }
  void send_raw(const std::string& bytes) { write_all(bytes); }

  // The next frame from the client; fails the test after kWaitMs.
  ws::Message receive() {
    ws::Message message;
    for (;;) {
      auto status = reader_.next(&message);
      REQUIRE(status != ws::FrameReader::Status::kError);
      if (status == ws::FrameReader::Status::kMessage) return message;
      pollfd c{conn_, POLLIN, 0};
      REQUIRE(::poll(&c, 1, kWaitMs) == 1);
      char buffer[4096];
      ssize_t n = ::read(conn_, buffer, sizeof buffer);
      REQUIRE(n > 0);
      reader_.feed(buffer, static_cast<size_t>(n));
    }
  }

  // True when the client closed the TCP connection within kWaitMs.
  bool sees_eof() {
    char buffer[4096];
    for (;;) {
      pollfd c{conn_, POLLIN, 0};
      if (::poll(&c, 1, kWaitMs) != 1) return false;
      ssize_t n = ::read(conn_, buffer, sizeof buffer);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  void write_all(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(conn_, bytes.data() + done, bytes.size() - done);
      REQUIRE(n > 0);
      done += static_cast<size_t>(n);
    }
  }

  int listener_ = -1;
  int conn_ = -1;
  uint16_t port_ = 0;
  ws::FrameReader reader_{ws::Role::kServer};
};

std::unique_ptr<WsClientThread> connect(FakeServer& server, smws::net::WsClientThreadOptions options = {}) {
  std::string request;
  std::thread upgrade([&] { request = server.accept_upgrade(); });
  std::string error;
  auto url = smws::net::parse_ws_url(server.url(), &error);
  REQUIRE(url);
  smws::net::WsClientOptions client;
  client.connect_timeout_s = 5;
  client.headers = {{"User-Agent", "unit-test"}};
  smws::net::HandshakeInfo info;
  auto conn = WsClientThread::open(*url, client, std::move(options), &info);
  upgrade.join();
  REQUIRE(conn);
  REQUIRE(info.outcome == smws::net::HandshakeInfo::Outcome::kOpen);
  CHECK(request.find("User-Agent: unit-test") != std::string::npos);
  return conn;
}

// The next inbox item, waiting at most kWaitMs.
WsInbound next_item(WsClientThread& conn) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (std::chrono::steady_clock::now() < deadline) {
    auto items = conn.take(100ms);
    if (!items.empty()) {
      REQUIRE(items.size() == 1);
      return items.front();
    }
  }
  FAIL("nothing in the inbox within the wait");
  return {};
}

}  // namespace

TEST_CASE("ws client thread: pings are answered while the owner takes nothing", "[ws_client_thread]") {
  FakeServer server;
  auto conn = connect(server);
  CHECK(conn->local_address().rfind("127.0.0.1:", 0) == 0);
  server.send(ws::Opcode::kPing, "one");
  server.send(ws::Opcode::kPing, "two");
  auto first = server.receive();
  CHECK(first.opcode == ws::Opcode::kPong);
  CHECK(first.payload == "one");
  CHECK(server.receive().payload == "two");
}

TEST_CASE("ws client thread: the filter keeps some text messages and its reply goes out at once",
          "[ws_client_thread]") {
  FakeServer server;
  smws::net::WsClientThreadOptions options;
  options.filter = [](std::string_view text, std::string* reply) {
    if (text == "ping") *reply = "pong";
    return text.rfind("keep", 0) == 0;
  };
  auto conn = connect(server, options);
  server.send(ws::Opcode::kText, "drop me");
  server.send(ws::Opcode::kText, "ping");
  server.send(ws::Opcode::kBinary, "keep? binary is never posted");
  server.send(ws::Opcode::kText, "keep this");
  auto reply = server.receive();
  CHECK(reply.opcode == ws::Opcode::kText);
  CHECK(reply.payload == "pong");
  auto item = next_item(*conn);
  CHECK(item.kind == WsInbound::Kind::kMessage);
  CHECK(item.text == "keep this");
}

TEST_CASE("ws client thread: text sent by the owner reaches the server and close() ends with 1000",
          "[ws_client_thread]") {
  FakeServer server;
  auto conn = connect(server);
  REQUIRE(conn->send_text(R"({"type":"refresh"})"));
  auto message = server.receive();
  CHECK(message.opcode == ws::Opcode::kText);
  CHECK(message.payload == R"({"type":"refresh"})");

  std::thread closer([&] { conn->close(); });
  auto close = server.receive();
  REQUIRE(close.opcode == ws::Opcode::kClose);
  uint16_t code = 0;
  std::string reason;
  REQUIRE(ws::parse_close_payload(close.payload, &code, &reason));
  CHECK(code == ws::kCloseNormal);
  server.send(ws::Opcode::kClose, ws::close_payload(ws::kCloseNormal, ""));
  closer.join();
  CHECK(server.sees_eof());
  CHECK_FALSE(conn->send_text("too late"));
  CHECK(conn->take().empty());  // a close we asked for is not reported
}

TEST_CASE("ws client thread: the server's close is echoed with its code and reported with it",
          "[ws_client_thread]") {
  FakeServer server;
  auto conn = connect(server);
  server.send(ws::Opcode::kClose, ws::close_payload(ws::kCloseGoingAway, "restarting"));
  auto echo = server.receive();
  REQUIRE(echo.opcode == ws::Opcode::kClose);
  uint16_t code = 0;
  std::string reason;
  REQUIRE(ws::parse_close_payload(echo.payload, &code, &reason));
  CHECK(code == ws::kCloseGoingAway);
  auto item = next_item(*conn);
  CHECK(item.kind == WsInbound::Kind::kClosed);
  CHECK(item.why == "the server closed the connection (1001 restarting)");
}

TEST_CASE("ws client thread: a close without a code is answered without one (never 1005 on the wire)",
          "[ws_client_thread]") {
  FakeServer server;
  auto conn = connect(server);
  server.send(ws::Opcode::kClose, "");
  auto echo = server.receive();
  REQUIRE(echo.opcode == ws::Opcode::kClose);
  CHECK(echo.payload.empty());
  auto item = next_item(*conn);
  CHECK(item.why == "the server closed the connection (1005)");
}

TEST_CASE("ws client thread: a protocol error is closed with its code and a lost TCP connection is reported",
          "[ws_client_thread]") {
  FakeServer bad;
  auto conn = connect(bad);
  bad.send_raw(std::string("\x83\x00", 2));  // opcode 3 is reserved: 1002
  auto close = bad.receive();
  REQUIRE(close.opcode == ws::Opcode::kClose);
  uint16_t code = 0;
  std::string reason;
  REQUIRE(ws::parse_close_payload(close.payload, &code, &reason));
  CHECK(code == ws::kCloseProtocolError);
  auto item = next_item(*conn);
  CHECK(item.kind == WsInbound::Kind::kClosed);
  CHECK(item.why.find("broke the WebSocket protocol (1002") != std::string::npos);

  FakeServer gone;
  smws::net::WsClientThreadOptions options;
  options.peer_name = "the relay";
  auto lost = connect(gone, options);
  gone.hang_up();
  item = next_item(*lost);
  CHECK(item.why == "the relay closed the connection without a close frame");
}

TEST_CASE("ws client thread: a full inbox drops new messages and says so once", "[ws_client_thread]") {
  FakeServer server;
  smws::net::WsClientThreadOptions options;
  options.max_inbox = 2;
  auto conn = connect(server, options);
  for (const char* text : {"a", "b", "c", "d"}) server.send(ws::Opcode::kText, text);
  server.send(ws::Opcode::kPing, "after");  // answered once all four were read
  CHECK(server.receive().payload == "after");
  auto items = conn->take();
  REQUIRE(items.size() == 2);
  CHECK(items[0].text == "a");
  CHECK(items[1].text == "b");
  CHECK(conn->take_overflow());
  CHECK_FALSE(conn->take_overflow());
}
