// SPDX-License-Identifier: Apache-2.0
// ws-probe's (and hitl-approve's) side of the handshake: WsClient::open
// against a server on 127.0.0.1 that answers the upgrade request with the
// fuzz input, "@ACCEPT@" replaced by the right Sec-WebSocket-Accept so the
// checks past the key are reached, then closes. Whatever follows the head
// goes through the client-role frame reader, and the headers through the
// intermediary fingerprinting ws-probe reports. Checks: nothing throws or
// hangs; open means status 101 and a valid accept; a refusal says why.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>

#include <string>
#include <string_view>
#include <thread>

#include "fuzz_check.h"
#include "smws/net/handshake.h"
#include "smws/net/ws_client.h"
#include "smws/probe_verdict.h"

namespace {

int listener(uint16_t* port) {
  static int fd = -1;
  static uint16_t bound = 0;
  if (fd < 0) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    FUZZ_CHECK(listen(fd, 16) == 0);
    socklen_t len = sizeof addr;
    FUZZ_CHECK(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    bound = ntohs(addr.sin_port);
  }
  *port = bound;
  return fd;
}

// Reads the request head (bounded by 2 s), then sends `answer` and closes.
void serve_one(int listen_fd, std::string answer) {
  pollfd p{listen_fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return;
  int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  std::string request;
  char buf[4096];
  while (request.find("\r\n\r\n") == std::string::npos) {
    pollfd q{fd, POLLIN, 0};
    if (poll(&q, 1, 2000) != 1) break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string marker = "sec-websocket-key: ";
  std::string lower_request = request;
  for (auto& c : lower_request) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (size_t k = lower_request.find(marker); k != std::string::npos) {
    size_t start = k + marker.size();
    std::string key = request.substr(start, request.find("\r\n", start) - start);
    std::string accept = smws::net::websocket_accept_key(key);
    for (size_t at; (at = answer.find("@ACCEPT@")) != std::string::npos;) answer.replace(at, 8, accept);
  }
  size_t sent = 0;
  while (sent < answer.size()) {
    ssize_t n = send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint16_t port = 0;
  int listen_fd = listener(&port);
  std::thread server(serve_one, listen_fd, std::string(reinterpret_cast<const char*>(data), size));

  std::string error;
  auto url = smws::net::parse_ws_url("ws://127.0.0.1:" + std::to_string(port) + "/", &error);
  FUZZ_CHECK(url.has_value());
  smws::net::WsClientOptions options;
  options.connect_timeout_s = 5;
  options.max_message = 4096;
  smws::net::WsClient client;
  auto info = client.open(*url, options);
  (void)smws::fingerprint(info.headers);
  if (info.outcome == smws::net::HandshakeInfo::Outcome::kOpen) {
    FUZZ_CHECK(info.status == 101);
    FUZZ_CHECK(client.is_open());
    for (int turns = 0; turns < 64; ++turns) {
      smws::ws::Message m;
      smws::ws::FrameReader::Status st;
      while ((st = client.next(&m)) == smws::ws::FrameReader::Status::kMessage) {
      }
      if (st == smws::ws::FrameReader::Status::kError) {
        FUZZ_CHECK(client.reader().error_code() >= 1000);
        break;
      }
      pollfd p{client.fd(), POLLIN, 0};
      if (!client.has_pending() && poll(&p, 1, 2000) != 1) break;
      auto io = client.read_some(&error);
      if (io != smws::net::WsClient::Io::kData && io != smws::net::WsClient::Io::kWouldBlock) break;
    }
    client.close();
  } else {
    FUZZ_CHECK(!info.error.empty());
    FUZZ_CHECK(!client.is_open());
  }
  server.join();
  return 0;
}
