// SPDX-License-Identifier: Apache-2.0
// The ceiling for bench_relay.py's "one broadcast to 5,000 clients": the
// least a WebSocket server can do per broadcast on this machine. One epoll
// thread accepts loopback WebSocket clients (answers the upgrade, ignores
// everything they send) and, for each stdin line, encodes one text frame and
// writes those same bytes to every open client with one send(2) each. No
// queue, no slow-client policy, no pings, no TLS, no validation: what is left
// is the kernel's cost (each send on loopback runs the receiver's TCP input
// path and wakes it), which bounds what ws-relay or Node can reach.
//
//   raw_ws_ceiling [PORT]   (0 or none: any free port)
//
// Prints "raw-ws-ceiling: listening on ws://127.0.0.1:PORT/ws/events" on
// stderr like ws-relay (the driver reads the port from it); exits at stdin
// EOF or on SIGTERM. A send that takes less than the whole frame (never for
// an idle client's empty socket buffer) is counted and reported at exit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "smws/net/handshake.h"
#include "smws/ws_frame.h"

namespace {

struct Client {
  int fd = -1;
  bool open = false;  // upgrade answered: broadcasts go to it
  std::string head;   // request head so far
};

constexpr uint32_t kListenTag = UINT32_MAX;
constexpr uint32_t kStdinTag = UINT32_MAX - 1;

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 0;
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(lfd, 4096) != 0) {
    std::perror("raw_ws_ceiling: listen");
    return 73;
  }
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::fprintf(stderr, "raw-ws-ceiling: listening on ws://127.0.0.1:%d/ws/events\n",
               ntohs(addr.sin_port));

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kListenTag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.u32 = kStdinTag;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);

  std::vector<Client> clients;   // index = epoll tag; never shrinks
  std::vector<int> open_fds;     // the broadcast list
  std::string in;                // stdin bytes not yet a whole line
  uint64_t short_sends = 0, broadcasts = 0;
  std::vector<char> buf(1 << 16);
  std::vector<epoll_event> events(1024);
  for (bool running = true; running;) {
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (int k = 0; k < n && running; ++k) {
      uint32_t tag = events[k].data.u32;
      if (tag == kListenTag) {
        int fd;
        while ((fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.u32 = static_cast<uint32_t>(clients.size());
          clients.push_back(Client{fd, false, {}});
          ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
      } else if (tag == kStdinTag) {
        ssize_t r = ::read(STDIN_FILENO, buf.data(), buf.size());
        if (r <= 0) {
          running = false;
          break;
        }
        in.append(buf.data(), static_cast<size_t>(r));
        size_t start = 0, nl;
        while ((nl = in.find('\n', start)) != std::string::npos) {
          std::string_view line(in.data() + start, nl - start);
          start = nl + 1;
          if (line.empty()) continue;
          // Encoded once; the same bytes go to every client.
          std::string frame = smws::ws::encode_frame(smws::ws::Opcode::kText, line);
          for (int fd : open_fds) {
            ssize_t w = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w != static_cast<ssize_t>(frame.size())) ++short_sends;
          }
          ++broadcasts;
        }
        in.erase(0, start);
      } else {
        Client& c = clients[tag];
        if (c.fd < 0) continue;  // closed earlier in this batch
        ssize_t r = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(c.fd);  // leaves the epoll set
          for (size_t i = 0; i < open_fds.size(); ++i) {
            if (open_fds[i] == c.fd) {
              open_fds[i] = open_fds.back();
              open_fds.pop_back();
              break;
            }
          }
          c.fd = -1;
          continue;
        }
        if (r < 0 || c.open) continue;  // an open client's frames are ignored
        c.head.append(buf.data(), static_cast<size_t>(r));
        if (smws::net::find_head_end(c.head) == std::string_view::npos) continue;
        std::string error;
        auto request = smws::net::parse_request_head(c.head, &error);
        const std::string* key = request ? request->header("sec-websocket-key") : nullptr;
        if (!key) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        std::string reply = smws::net::switching_protocols_response(*key);
        [[maybe_unused]] ssize_t w = ::send(c.fd, reply.data(), reply.size(), MSG_NOSIGNAL);
        c.open = true;
        c.head.clear();
        open_fds.push_back(c.fd);
      }
    }
  }
  std::fprintf(stderr, "raw-ws-ceiling: %llu broadcasts to %zu clients, %llu short sends\n",
               static_cast<unsigned long long>(broadcasts), open_fds.size(),
               static_cast<unsigned long long>(short_sends));
  return 0;
}
