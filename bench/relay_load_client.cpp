// SPDX-License-Identifier: Apache-2.0
// Load client for bench/bench_relay.py: holds N WebSocket connections to one
// server from ONE epoll thread (so 5,000 clients fit in one process under the
// 20,000 open-file limit) and counts what arrives. The same binary measures
// ws-relay and the Node baseline, so the two are compared through the same
// lens; it is written on raw sockets + smws/ws_frame.h so its own cost per
// message is small next to either server's.
//
// Messages whose payload starts with {"type":"b" are benchmark events:
//   {"type":"b","i":I,"t":T,...}  T = CLOCK_MONOTONIC ns when the driver
// wrote the event to the server's stdin (0: not timed). Latency = receipt
// time - T, the same clock in both processes. Anything else (ws-relay's
// initial snapshot) counts as "other".
//
// Protocol with the driver (stdout, one JSON object per line):
//   {"ready":N}  every connection is open (and, with --wait-initial, has
//                received its first message); the driver may start writing.
//   {"done":...} summary, printed at exit: when every connection has --expect
//                benchmark events, at --timeout seconds after ready, when all
//                connections are closed, or when stdin ends (the driver's stop).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "smws/ws_frame.h"

namespace {

using smws::ws::FrameReader;
using smws::ws::Message;
using smws::ws::Opcode;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/ws/events";
  // --spread M: each "%i" in the path becomes (connection index % M), so
  // connection k can subscribe to machine k % M (bench_subscriptions.py).
  int spread = 0;
  int clients = 1;
  uint64_t expect = 0;       // benchmark events per connection; 0 = until stopped
  bool wait_initial = false; // ready only after each connection's first message
  bool stall = false;        // stop reading once ready (the stalled client)
  int rcvbuf = 0;            // SO_RCVBUF before connect (0: kernel default)
  double timeout = 60;       // seconds after ready
  int max_inflight = 200;    // connects + handshakes at once (listen backlogs)
  int track = 64;            // per-event completion (max latency) for i < track
};

struct Conn {
  int fd = -1;
  enum State { kConnecting, kHandshake, kOpen, kClosed } state = kConnecting;
  std::string head;  // handshake response so far
  std::unique_ptr<FrameReader> reader;
  uint64_t bench = 0;
  uint64_t other = 0;
  bool counted_ready = false;
  bool complete = false;
};

const uint8_t kMask[4] = {0x11, 0x22, 0x33, 0x44};

void usage() {
  std::fprintf(stderr,
               "usage: relay_load_client --port P [--host H] [--path P] [--clients N]\n"
               "  [--spread M] [--expect M] [--wait-initial] [--stall] [--rcvbuf B] [--timeout S]\n");
  std::exit(64);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--host") o.host = value();
    else if (a == "--port") o.port = std::atoi(value().c_str());
    else if (a == "--path") o.path = value();
    else if (a == "--spread") o.spread = std::atoi(value().c_str());
    else if (a == "--clients") o.clients = std::atoi(value().c_str());
    else if (a == "--expect") o.expect = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--wait-initial") o.wait_initial = true;
    else if (a == "--stall") o.stall = true;
    else if (a == "--rcvbuf") o.rcvbuf = std::atoi(value().c_str());
    else if (a == "--timeout") o.timeout = std::atof(value().c_str());
    else if (a == "--max-inflight") o.max_inflight = std::atoi(value().c_str());
    else usage();
  }
  if (o.port <= 0 || o.clients <= 0) usage();
  return o;
}

// Parses the "t" of a benchmark event without a JSON parser (the load client
// must stay cheaper than the servers it measures).
// A relay that stamps seq (--seq, and always in a --redis group) puts it
// first: {"seq":N,"type":"b",...} counts too.
bool bench_fields(const std::string& p, int64_t* t, long* i) {
  static const char kPrefix[] = "{\"type\":\"b\"";
  static const char kSeq[] = "{\"seq\":";
  size_t from = 0;
  if (p.compare(0, sizeof kSeq - 1, kSeq) == 0) {
    size_t comma = p.find(',');
    if (comma == std::string::npos) return false;
    from = comma;  // the ',' stands where the '{' of kPrefix would
  }
  if (p.compare(from + 1, sizeof kPrefix - 2, kPrefix + 1) != 0) return false;
  *t = 0;
  *i = -1;
  if (auto pos = p.find("\"t\":"); pos != std::string::npos) *t = std::atoll(p.c_str() + pos + 4);
  if (auto pos = p.find("\"i\":"); pos != std::string::npos) *i = std::atol(p.c_str() + pos + 4);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) usage();

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(o.clients);
  auto request_for = [&o](int index) {
    std::string path = o.path;
    if (o.spread > 0) {
      const std::string k = std::to_string(index % o.spread);
      for (size_t at; (at = path.find("%i")) != std::string::npos;) path.replace(at, 2, k);
    }
    return "GET " + path + " HTTP/1.1\r\nHost: " + o.host + ":" + std::to_string(o.port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n";
  };
  int started = 0, inflight = 0, ready = 0, complete = 0, closed = 0;
  std::map<int, int> close_codes;
  std::vector<int64_t> latencies;
  std::vector<int64_t> event_done(o.track, 0);  // max latency per event index
  std::vector<int64_t> event_first(o.track, INT64_MAX);  // min latency per event index
  std::vector<int> event_seen(o.track, 0);
  int64_t first_ns = 0, last_ns = 0;
  uint64_t total = 0, other_total = 0;
  bool printed_ready = false;
  int64_t ready_ns = 0;

  auto start_one = [&]() {
    Conn& c = conns[started];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      std::perror("socket");
      std::exit(71);
    }
    if (o.rcvbuf > 0) setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof o.rcvbuf);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.reader = std::make_unique<FrameReader>(smws::ws::Role::kClient, 64u << 20);
    int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (rc < 0 && errno != EINPROGRESS) {
      std::perror("connect");
      std::exit(69);
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(started);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    ++started;
    ++inflight;
  };
  auto close_conn = [&](Conn& c, int code) {
    if (c.state == Conn::kClosed) return;
    if (c.state != Conn::kOpen) --inflight;
    c.state = Conn::kClosed;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    ++closed;
    ++close_codes[code];
  };
  auto note_ready = [&](Conn& c) {
    if (c.counted_ready) return;
    c.counted_ready = true;
    ++ready;
    if (o.stall) {
      epoll_event ev{};
      ev.events = 0;  // never read again: the kernel window closes
      ev.data.u32 = static_cast<uint32_t>(&c - conns.data());
      epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
    }
  };

  // stdin: the driver's stop signal (EOF).
  {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = UINT32_MAX;
    epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
  }

  std::vector<char> buf(1 << 18);
  std::vector<epoll_event> events(1024);
  bool stop = false;
  while (!stop) {
    while (started < o.clients && inflight < o.max_inflight) start_one();
    if (!printed_ready && ready + closed >= o.clients) {
      printed_ready = true;
      ready_ns = now_ns();
      std::printf("{\"ready\":%d,\"closed\":%d}\n", ready, closed);
      std::fflush(stdout);
    }
    int timeout_ms = 100;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      const uint32_t idx = events[k].data.u32;
      if (idx == UINT32_MAX) {
        char b[256];
        ssize_t r = read(STDIN_FILENO, b, sizeof b);
        if (r <= 0) stop = true;
        if (r <= 0) epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, nullptr);
        continue;
      }
      Conn& c = conns[idx];
      if (c.state == Conn::kConnecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          close_conn(c, -1);
          continue;
        }
        const std::string request = request_for(static_cast<int>(idx));
        if (send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size())) {
          close_conn(c, -1);
          continue;
        }
        c.state = Conn::kHandshake;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = idx;
        epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        continue;
      }
      // Read until EAGAIN (edge of what the kernel holds now).
      for (;;) {
        ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          close_conn(c, 1006);
          break;
        }
        const int64_t t_recv = now_ns();
        size_t used = 0;
        if (c.state == Conn::kHandshake) {
          c.head.append(buf.data(), static_cast<size_t>(r));
          auto end = c.head.find("\r\n\r\n");
          if (end == std::string::npos) continue;
          if (c.head.compare(0, 12, "HTTP/1.1 101") != 0) {
            close_conn(c, -2);
            break;
          }
          c.state = Conn::kOpen;
          --inflight;
          std::string rest = c.head.substr(end + 4);
          c.head.clear();
          c.reader->feed(rest);
          if (!o.wait_initial) note_ready(c);
        } else {
          c.reader->feed(buf.data(), static_cast<size_t>(r));
        }
        (void)used;
        Message m;
        FrameReader::Status st;
        bool gone = false;
        while ((st = c.reader->next(&m)) == FrameReader::Status::kMessage) {
          if (m.opcode == Opcode::kText || m.opcode == Opcode::kBinary) {
            int64_t t;
            long i;
            if (bench_fields(m.payload, &t, &i)) {
              ++c.bench;
              ++total;
              if (!first_ns) first_ns = t_recv;
              last_ns = t_recv;
              if (t > 0) {
                const int64_t lat = t_recv - t;
                latencies.push_back(lat);
                if (i >= 0 && i < o.track) {
                  event_done[i] = std::max(event_done[i], lat);
                  event_first[i] = std::min(event_first[i], lat);
                  ++event_seen[i];
                }
              }
              if (o.expect && c.bench == o.expect && !c.complete) {
                c.complete = true;
                ++complete;
              }
            } else {
              ++c.other;
              ++other_total;
              note_ready(c);
            }
          } else if (m.opcode == Opcode::kPing) {
            std::string pong = smws::ws::encode_frame(Opcode::kPong, m.payload, true, kMask);
            send(c.fd, pong.data(), pong.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          } else if (m.opcode == Opcode::kClose) {
            uint16_t code = 1005;
            std::string reason;
            smws::ws::parse_close_payload(m.payload, &code, &reason);
            std::string reply = smws::ws::encode_close(code == 1005 ? 1000 : code, "", kMask);
            send(c.fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            close_conn(c, code);
            gone = true;
            break;
          }
        }
        if (gone) break;
        if (st == FrameReader::Status::kError) {
          close_conn(c, c.reader->error_code());
          break;
        }
        if (o.stall && c.counted_ready) break;
        // Level-triggered epoll reports the socket again if more is pending:
        // a short read means the kernel had no more, so skip the recv that
        // would only say EAGAIN (halves the client's syscalls at 5,000).
        if (static_cast<size_t>(r) < buf.size()) break;
      }
    }
    if (printed_ready) {
      if (o.expect && complete + closed >= o.clients) stop = true;
      if (closed >= o.clients) stop = true;
      if ((now_ns() - ready_ns) / 1e9 > o.timeout) stop = true;
    }
  }

  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) -> double {
    if (latencies.empty()) return -1;
    size_t k = static_cast<size_t>(p * (latencies.size() - 1) + 0.5);
    return latencies[k] / 1e3;
  };
  std::string codes, per_event;
  for (auto& [code, count] : close_codes) {
    codes += (codes.empty() ? "" : ",") + std::string("\"") + std::to_string(code) + "\":" +
             std::to_string(count);
  }
  for (int i = 0; i < o.track; ++i) {
    if (!event_seen[i]) continue;
    per_event += (per_event.empty() ? "" : ",") + std::string("[") + std::to_string(i) + "," +
                 std::to_string(event_seen[i]) + "," + std::to_string(event_done[i] / 1e3) + "," +
                 std::to_string(event_first[i] / 1e3) + "]";
  }
  std::printf(
      "{\"done\":true,\"clients\":%d,\"ready\":%d,\"complete\":%d,\"closed\":%d,"
      "\"messages\":%llu,\"other\":%llu,\"first_ns\":%lld,\"last_ns\":%lld,"
      "\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_max_us\":%.1f,\"close_codes\":{%s},"
      "\"events\":[%s]}\n",
      o.clients, ready, complete, closed, static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(other_total), static_cast<long long>(first_ns),
      static_cast<long long>(last_ns), pct(0.5), pct(0.99), pct(1.0), codes.c_str(),
      per_event.c_str());
  std::fflush(stdout);
  return 0;
}
