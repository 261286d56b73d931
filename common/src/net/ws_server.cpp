// The epoll loop behind WsServer. Everything here runs on the loop thread
// except wake(). Model and reasons: docs/architecture.md.
#include "smws/net/ws_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "smws/log.h"
#include "smws/net/tls.h"
#include "smws/shutdown.h"
#include "smws/ws_frame.h"

namespace smws::net {
namespace {

// One read(2) fills this loop-wide buffer; 64 KiB is one TLS record's worth
// four times over and a typical socket receive batch.
constexpr size_t kReadChunk = 64 * 1024;
// Bytes read from one client per loop turn before the others get theirs: a
// flooding client cannot starve the rest (it is resumed on the next turn).
constexpr size_t kMaxReadPerTurn = 256 * 1024;
// Frames gathered into one sendmsg(2); 64 x ~100 B events fill a packet train
// while keeping the iovec array on the stack.
constexpr int kMaxIov = 64;
// TLS has no writev: frames are copied into a staging buffer of about one
// TLS record and written with SSL_write.
constexpr size_t kTlsStage = 16 * 1024;
// Connections accepted per listener event before serving the others.
constexpr int kMaxAcceptPerTurn = 256;
// After EMFILE/ENFILE the listener pauses this long instead of spinning.
constexpr double kAcceptPause = 0.1;

enum class EntryKind : uint8_t {
  kData,        // a data message (counts against max_queue)
  kControl,     // our ping
  kPong,        // answer to the client's latest ping, encoded when written
  kClose,       // our close frame
  kDropNotice,  // {"type":"dropped","count":N}, encoded when it is written
  kRaw,         // HTTP bytes (101 or a reply)
};

struct Entry {
  Frame frame;  // null only for a kDropNotice not yet encoded
  EntryKind kind = EntryKind::kData;
  uint64_t dropped = 0;  // kDropNotice: messages it stands for
};

Frame make_frame(std::string bytes) { return std::make_shared<const std::string>(std::move(bytes)); }

double wall_clock() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string format_addr(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?";
}

}  // namespace

Frame make_text_frame(std::string_view payload) {
  return make_frame(ws::encode_frame(ws::Opcode::kText, payload));
}

// One TCP connection, from accept to close. Owned by Impl::conns_ (loop thread).
struct Conn {
  enum class Phase {
    kHandshake,  // TLS handshake and/or HTTP request head being read
    kOpen,       // WebSocket open: broadcasts go to it
    kReply,      // HTTP reply (or 4xx refusal) being written; then kLinger
    kClosing,    // our close frame is queued or sent; waiting for the peer's
    kLinger,     // done: write side shut, reading until EOF or deadline
  };

  ClientId id = 0;
  int fd = -1;
  SSL* ssl = nullptr;
  Phase phase = Phase::kHandshake;
  std::string peer;
  double deadline = 0;  // for every phase but kOpen: when it is dropped

  std::string head;  // kHandshake: request bytes so far
  std::unique_ptr<ws::FrameReader> reader;  // from kOpen on

  std::deque<Entry> queue;
  size_t front_offset = 0;  // bytes of queue.front() already written (plain TCP)
  size_t data_queued = 0;   // kData entries in queue
  std::string tls_out;      // TLS: staged bytes; retried as they are until written
  size_t tls_out_off = 0;
  bool write_blocked = false;  // kernel buffer full: wait for EPOLLOUT
  bool in_dirty = false;       // listed in dirty_ (needs a flush)
  bool in_ready = false;       // listed in ready_ (more bytes to read)
  bool counted_open = false;   // counted in stats.clients, on_open called
  bool warned_drop = false;    // the first drop was logged (once per client)
  // A kPong entry is queued and not yet encoded; it will answer with this,
  // the latest ping's payload (RFC 6455 §5.5.3 allows answering only the
  // latest), so a ping flood from a client that does not read costs one
  // queue entry, not one per ping.
  bool pong_queued = false;
  std::string pong_payload;
  bool close_queued = false;
  bool close_sent = false;
  bool close_received = false;
  bool dead = false;

  double next_ping = 0;
  double ping_outstanding_since = 0;  // 0: no ping waiting for its pong
  uint64_t ping_counter = 0;

  bool has_partial_front() const { return front_offset > 0; }
};

struct WsServer::Impl {
  Impl(ServerOptions o, WsServerHandler* h) : options(std::move(o)), handler(h) {}

  ServerOptions options;
  WsServerHandler* handler;
  std::unique_ptr<TlsContext> tls;
  ServerStats stats;

  int listen_fd = -1;
  int epoll_fd = -1;
  int event_fd = -1;
  uint16_t port = 0;
  bool listener_paused = false;
  double resume_accept_at = 0;
  bool shutdown_fd_watched = false;
  int watched_fd = -1;  // watch(): its address is the epoll tag
  bool shutting_down = false;
  size_t handshaking = 0;     // conns in Phase::kHandshake (max_handshaking)
  bool warned_shed = false;   // the first shed accept was logged

  std::atomic<bool> wake_pending{false};

  ClientId next_id = 1;
  std::vector<Conn*> conns;   // every live connection (owning; deleted in reap)
  std::vector<Conn*> open;    // kOpen clients, the broadcast list (compacted in reap)
  std::unordered_map<ClientId, Conn*> by_id;  // kOpen and kClosing clients
  std::vector<Conn*> dirty;   // queued bytes waiting for a flush
  std::vector<Conn*> ready;   // stopped reading at the per-turn cap
  std::vector<ClientId> closed_ids;  // on_close still to be called
  bool needs_reap = false;

  double scan_period = 0.25;
  double next_scan = 0;
  std::vector<char> read_buf = std::vector<char>(kReadChunk);

  // --- setup ---
  bool open_listener(std::string* error);

  // --- loop ---
  void accept_all(double now);
  void handle_event(Conn* c, uint32_t events, double now);
  void read_some(Conn* c, double now);
  void on_bytes(Conn* c, const char* data, size_t n, double now);
  void on_head(Conn* c, double now);
  void accept_upgrade(Conn* c, HttpRequest request, double now);
  void refuse(Conn* c, const HttpReply& reply, bool head_only, double now);
  void on_frames(Conn* c, double now);
  void flush(Conn* c, double now);
  void flush_plain(Conn* c, double now);
  void flush_tls(Conn* c, double now);
  void after_written(Conn* c, const Entry& e);
  void on_drained(Conn* c, double now);
  void scan(double now);
  void begin_close(Conn* c, uint16_t code, std::string_view reason, bool discard,
                   double grace, double now);
  void leave_open(Conn* c);
  void leave_handshake(Conn* c) {
    if (c->phase == Conn::Phase::kHandshake) --handshaking;
  }
  void discard_unstarted(Conn* c);
  void start_shutdown(double seconds, bool discard, double now);
  void on_signal(double now);
  void destroy(Conn* c);
  void reap();
  void notify_closed();

  // --- queueing ---
  SendStatus enqueue_data(Conn* c, const Frame& frame, double now, bool initial = false);
  void enqueue(Conn* c, Frame frame, EntryKind kind);
  void mark_dirty(Conn* c) {
    if (!c->in_dirty) {
      c->in_dirty = true;
      dirty.push_back(c);
    }
  }

  // --- transport: plain TCP or TLS ---
  // > 0 bytes, 0 EOF, -1 would block, -2 error.
  ssize_t transport_read(Conn* c, char* buf, size_t n);
};

// ---------------------------------------------------------------- setup

bool WsServer::Impl::open_listener(std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_text = std::to_string(options.port);
  std::string where = options.host + ":" + port_text;
  int rc = getaddrinfo(options.host.empty() ? nullptr : options.host.c_str(), port_text.c_str(),
                       &hints, &res);
  if (rc != 0) {
    *error = "cannot listen on " + where + ": " + gai_strerror(rc);
    return false;
  }
  int last_errno = 0;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // The backlog absorbs a reconnect storm (thousands of dashboards after a
    // restart) while the loop accepts 256 per turn; the kernel caps it at
    // net.core.somaxconn.
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 4096) == 0) {
      listen_fd = fd;
      break;
    }
    last_errno = errno;
    ::close(fd);
  }
  freeaddrinfo(res);
  if (listen_fd < 0) {
    *error = "cannot listen on " + where + ": " + log::errno_text(last_errno);
    return false;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return true;
}

WsServer::WsServer(ServerOptions options, WsServerHandler* handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {}

WsServer::~WsServer() {
  for (Conn* c : impl_->conns) {
    if (c->ssl) SSL_free(c->ssl);
    if (c->fd >= 0) ::close(c->fd);
    delete c;
  }
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  if (impl_->epoll_fd >= 0) ::close(impl_->epoll_fd);
  if (impl_->event_fd >= 0) ::close(impl_->event_fd);
}

bool WsServer::open(std::string* error) {
  Impl& s = *impl_;
  if (!s.options.tls_cert.empty() || !s.options.tls_key.empty()) {
    if (s.options.tls_cert.empty() || s.options.tls_key.empty()) {
      *error = "TLS needs both a certificate and a key";
      return false;
    }
    s.tls = TlsContext::load_server(s.options.tls_cert, s.options.tls_key, error);
    if (!s.tls) return false;
  }
  if (!s.open_listener(error)) return false;
  s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  s.event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.epoll_fd < 0 || s.event_fd < 0) {
    *error = "cannot create epoll/eventfd: " + log::errno_text(errno);
    return false;
  }
  // data.ptr identifies the source: nullptr-based tags for the three fixed fds.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &s.listen_fd;
  ::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.listen_fd, &ev);
  ev.data.ptr = &s.event_fd;
  ::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.event_fd, &ev);
  if (shutdown::fd() >= 0) {
    ev.data.ptr = &s.shutdown_fd_watched;
    if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, shutdown::fd(), &ev) == 0) {
      s.shutdown_fd_watched = true;
    }
  }
  // Timers are checked by a periodic scan: a quarter of the shortest ping
  // period keeps a ping timeout within 25% of its value, and 250 ms bounds
  // the error of the 2 s close grace and of handshake timeouts.
  double shortest = 1.0;
  if (s.options.ping_interval > 0) {
    shortest = std::min(s.options.ping_interval, s.options.ping_timeout);
  }
  s.scan_period = std::clamp(shortest / 4, 0.005, 0.25);
  return true;
}

uint16_t WsServer::bound_port() const { return impl_->port; }

std::string WsServer::url() const {
  const Impl& s = *impl_;
  std::string host = s.options.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(s.tls ? "wss://" : "ws://") + host + ":" + std::to_string(s.port) +
         s.options.path;
}

double WsServer::now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void WsServer::wake() {
  if (!impl_->wake_pending.exchange(true)) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->event_fd, &one, sizeof one);
  }
}

// ---------------------------------------------------------------- loop

void WsServer::run() {
  Impl& s = *impl_;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  s.next_scan = now() + s.scan_period;
  for (;;) {
    double t = now();
    int timeout_ms = 0;
    if (s.ready.empty()) {
      timeout_ms = static_cast<int>(std::ceil(std::max(0.0, s.next_scan - t) * 1000));
    }
    int n = ::epoll_wait(s.epoll_fd, events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) {
      log::error("epoll_wait: " + log::errno_text(errno));
      n = 0;
    }
    t = now();
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &s.listen_fd) {
        s.accept_all(t);
      } else if (tag == &s.event_fd) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = ::read(s.event_fd, &count, sizeof count);
        s.wake_pending.store(false);
        s.handler->on_wake();
      } else if (tag == &s.watched_fd) {
        if (s.watched_fd >= 0) s.handler->on_readable(s.watched_fd);
      } else if (tag == &s.shutdown_fd_watched) {
        s.on_signal(t);
      } else {
        s.handle_event(static_cast<Conn*>(tag), events[i].events, t);
      }
    }
    // Clients that hit the per-turn read cap get their next share.
    if (!s.ready.empty()) {
      std::vector<Conn*> again;
      again.swap(s.ready);
      for (Conn* c : again) {
        c->in_ready = false;
        if (!c->dead) s.read_some(c, t);
      }
    }
    if (t >= s.next_scan) {
      s.scan(t);
      s.handler->on_tick(t);
      s.next_scan = t + s.scan_period;
    }
    s.notify_closed();
    // Everything queued this turn goes out in as few system calls as possible.
    // A write-blocked connection is skipped: its kernel buffer is full, so a
    // sendmsg would only fail with EAGAIN (one wasted system call per event
    // per stalled client). Its queue stays put; the EPOLLOUT edge (or, for
    // TLS, any event) reaches handle_event, which clears write_blocked and
    // flushes everything queued meanwhile.
    while (!s.dirty.empty()) {
      std::vector<Conn*> batch;
      batch.swap(s.dirty);
      for (Conn* c : batch) {
        c->in_dirty = false;
        if (!c->dead && !c->write_blocked) s.flush(c, t);
      }
    }
    s.notify_closed();
    s.reap();
    if (s.shutting_down && s.conns.empty()) break;
  }
}

void WsServer::Impl::accept_all(double now) {
  for (int i = 0; i < kMaxAcceptPerTurn; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log::warn("cannot accept more connections: " + log::errno_text(errno) +
                  " (pausing 100 ms)");
        ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
        listener_paused = true;
        resume_accept_at = now + kAcceptPause;
      }
      return;  // EAGAIN: all taken
    }
    if (handshaking >= options.max_handshaking) {
      // Idle connects must not hold every descriptor: the newest is closed
      // (those already waiting are nearer their request or their timeout).
      ::close(fd);
      ++stats.accepts_shed;
      if (!warned_shed) {
        warned_shed = true;
        log::warn(std::to_string(handshaking) +
                  " connections are in their handshake: closing new ones at once "
                  "until some finish or time out");
      }
      continue;
    }
    int one = 1;
    // Events are small and latency matters; writes are already batched.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new Conn;
    c->id = next_id++;
    c->fd = fd;
    c->peer = format_addr(ss);
    c->deadline = now + options.handshake_timeout;
    if (tls) {
      c->ssl = SSL_new(tls->ssl_ctx());
      if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        log::warn("TLS: cannot set up a connection from " + c->peer);
        if (c->ssl) SSL_free(c->ssl);
        ::close(fd);
        delete c;
        continue;
      }
      SSL_set_accept_state(c->ssl);
    }
    conns.push_back(c);
    ++handshaking;
    ++stats.tcp_connections;
    // Edge-triggered, registered once: no epoll_ctl per blocked write.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }
}

void WsServer::Impl::handle_event(Conn* c, uint32_t events, double now) {
  if (c->dead) return;
  // TLS reads may need writes (handshake) and vice versa, so a TLS connection
  // tries both on any event.
  if ((events & EPOLLOUT) || c->ssl) c->write_blocked = false;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) || c->ssl) read_some(c, now);
  if (!c->dead && !c->write_blocked && (!c->queue.empty() || c->tls_out_off < c->tls_out.size())) {
    flush(c, now);
  }
}

ssize_t WsServer::Impl::transport_read(Conn* c, char* buf, size_t n) {
  if (!c->ssl) {
    for (;;) {
      ssize_t r = ::recv(c->fd, buf, n, 0);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
      return -2;
    }
  }
  ERR_clear_error();
  int r = SSL_read(c->ssl, buf, static_cast<int>(n));
  if (r > 0) return r;
  int err = SSL_get_error(c->ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return -1;
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;  // TCP EOF without close_notify
  if (c->phase == Conn::Phase::kHandshake) {
    char text[256];
    ERR_error_string_n(ERR_get_error(), text, sizeof text);
    log::note(1, "TLS handshake with " + c->peer + " failed: " + text);
  }
  ERR_clear_error();
  return -2;
}

void WsServer::Impl::read_some(Conn* c, double now) {
  size_t budget = kMaxReadPerTurn;
  while (!c->dead) {
    ssize_t n = transport_read(c, read_buf.data(), read_buf.size());
    if (n == -1) return;
    if (n == 0 && !c->write_blocked &&
        (!c->queue.empty() || c->tls_out_off < c->tls_out.size())) {
      // A peer may half-close right behind its close frame or its HTTP
      // request (nc -N, socat) and still read our echo or reply: hand the
      // kernel what is queued before letting go.
      flush(c, now);
    }
    if (n <= 0) {  // EOF or error: the peer is gone
      destroy(c);
      return;
    }
    on_bytes(c, read_buf.data(), static_cast<size_t>(n), now);
    if (static_cast<size_t>(n) >= budget) {
      if (!c->in_ready && !c->dead) {
        c->in_ready = true;
        ready.push_back(c);
      }
      return;
    }
    budget -= static_cast<size_t>(n);
  }
}

void WsServer::Impl::on_bytes(Conn* c, const char* data, size_t n, double now) {
  switch (c->phase) {
    case Conn::Phase::kHandshake: {
      c->head.append(data, n);
      on_head(c, now);
      return;
    }
    case Conn::Phase::kOpen:
    case Conn::Phase::kClosing:
      if (c->reader->error_code() != 0 || c->close_received) return;  // discard
      c->reader->feed(data, n);
      on_frames(c, now);
      return;
    case Conn::Phase::kReply:
    case Conn::Phase::kLinger:
      return;  // discarded: the request was answered
  }
}

void WsServer::Impl::on_head(Conn* c, double now) {
  size_t end = find_head_end(c->head);
  if (end == std::string_view::npos || end > kMaxRequestHead) {
    if (c->head.size() > kMaxRequestHead) {
      refuse(c, text_reply(431, "request head larger than 16 KiB"), false, now);
    }
    return;
  }
  std::string error;
  auto request = parse_request_head(std::string_view(c->head).substr(0, end), &error);
  if (!request) {
    log::note(1, "bad request from " + c->peer + ": " + error);
    refuse(c, text_reply(400, error), false, now);
    return;
  }
  request->peer = c->peer;
  bool head_only = request->method == "HEAD";
  if (request->path == options.path ||
      std::find(options.extra_paths.begin(), options.extra_paths.end(), request->path) !=
          options.extra_paths.end()) {
    if (!is_upgrade_request(*request)) {
      HttpReply r = text_reply(426, "this path serves WebSocket only (Upgrade: websocket)");
      r.headers.emplace_back("Upgrade", "websocket");
      refuse(c, r, head_only, now);
      return;
    }
    std::optional<HttpReply> refusal = check_upgrade(*request);
    if (!refusal && !origin_allowed(*request, options.allow_origins)) {
      refusal = text_reply(403, "origin not allowed: " + *request->header("origin"));
    }
    if (!refusal && !token_ok(*request, options.token)) {
      refusal = text_reply(401, "a valid token is required (Authorization: Bearer or ?token=)");
      refusal->headers.emplace_back("WWW-Authenticate", "Bearer");
    }
    if (!refusal && (stats.clients >= options.max_clients || shutting_down)) {
      refusal = text_reply(503, shutting_down ? "shutting down" : "too many clients");
      refusal->headers.emplace_back("Retry-After", "5");
    }
    if (refusal) {
      ++stats.handshakes_refused;
      log::note(1, "refused WebSocket from " + c->peer + ": " + std::to_string(refusal->status) +
                       " " + refusal->body.substr(0, refusal->body.size() - 1));
      refuse(c, *refusal, false, now);
      return;
    }
    std::string rest = c->head.substr(end);
    c->head.clear();
    c->head.shrink_to_fit();
    accept_upgrade(c, std::move(*request), now);
    // Frames the client sent right behind its request.
    if (!rest.empty() && !c->dead) on_bytes(c, rest.data(), rest.size(), now);
    return;
  }
  ++stats.http_requests;
  refuse(c, handler->on_http(*request), head_only, now);
}

void WsServer::Impl::refuse(Conn* c, const HttpReply& reply, bool head_only, double now) {
  c->head.clear();
  leave_handshake(c);
  c->phase = Conn::Phase::kReply;
  c->deadline = now + options.close_timeout;
  enqueue(c, make_frame(serialize_reply(reply, head_only)), EntryKind::kRaw);
}

void WsServer::Impl::accept_upgrade(Conn* c, HttpRequest request, double now) {
  enqueue(c, make_frame(switching_protocols_response(*request.header("sec-websocket-key"))),
          EntryKind::kRaw);
  leave_handshake(c);
  c->phase = Conn::Phase::kOpen;
  c->reader = std::make_unique<ws::FrameReader>(ws::Role::kServer, options.max_message);
  // The first ping comes after 50-100% of the interval, spread by id, so a
  // reconnect storm of thousands of clients does not ping in lockstep (one
  // 5,000-client burst of pings and pongs every interval).
  double spread = 0.5 + 0.5 * std::fmod(static_cast<double>(c->id) * 0.6180339887, 1.0);
  c->next_ping = now + options.ping_interval * spread;
  c->counted_open = true;
  by_id[c->id] = c;
  ++stats.clients;
  ++stats.connections_total;
  log::note(2, "client " + std::to_string(c->id) + " connected from " + c->peer);
  ClientInfo info;
  info.id = c->id;
  info.peer = c->peer;
  info.request = std::move(request);
  handler->on_open(info);
  // Joins the broadcast list only now: what the handler broadcast from
  // on_open (events older than the snapshot it sent) is not sent twice.
  if (c->counted_open) open.push_back(c);
}

void WsServer::Impl::on_frames(Conn* c, double now) {
  ws::Message msg;
  while (!c->dead && !c->close_received) {
    auto st = c->reader->next(&msg);
    if (st == ws::FrameReader::Status::kNeedMore) return;
    if (st == ws::FrameReader::Status::kError) {
      ++stats.protocol_errors;
      log::note(1, "client " + std::to_string(c->id) + " (" + c->peer + ") violated the protocol: " +
                       std::to_string(c->reader->error_code()) + " " + c->reader->error_reason());
      begin_close(c, c->reader->error_code(), c->reader->error_reason(), true,
                  options.close_timeout, now);
      return;
    }
    switch (msg.opcode) {
      case ws::Opcode::kText:
      case ws::Opcode::kBinary:
        if (c->phase != Conn::Phase::kOpen) break;  // after our close: ignored
        ++stats.messages_in;
        handler->on_message(c->id, msg.payload, msg.opcode == ws::Opcode::kBinary);
        break;
      case ws::Opcode::kPing:
        if (!c->close_queued) {
          c->pong_payload = msg.payload;
          if (!c->pong_queued) {
            c->pong_queued = true;
            enqueue(c, nullptr, EntryKind::kPong);
          }
        }
        break;
      case ws::Opcode::kPong:
        c->ping_outstanding_since = 0;
        break;
      case ws::Opcode::kClose: {
        uint16_t code = 0;
        std::string reason;
        if (!ws::parse_close_payload(msg.payload, &code, &reason)) {
          ++stats.protocol_errors;
          begin_close(c, ws::kCloseProtocolError, "invalid close frame", true,
                      options.close_timeout, now);
          return;
        }
        c->close_received = true;
        log::note(2, "client " + std::to_string(c->id) + " closed with " + std::to_string(code));
        if (!c->close_queued) {
          // Echo the code (RFC 6455 §5.5.1); 1005 means "no code": echo none.
          begin_close(c, code, code == ws::kCloseNoStatus ? std::string_view() : reason, true,
                      options.close_timeout, now);
        } else if (c->close_sent) {
          on_drained(c, now);
        }
        return;
      }
      case ws::Opcode::kContinuation:
        break;  // never produced by the reader
    }
  }
}

// ---------------------------------------------------------------- queues

void WsServer::Impl::enqueue(Conn* c, Frame frame, EntryKind kind) {
  Entry e;
  e.frame = std::move(frame);
  e.kind = kind;
  c->queue.push_back(std::move(e));
  if (kind == EntryKind::kData) ++c->data_queued;
  mark_dirty(c);
}

SendStatus WsServer::Impl::enqueue_data(Conn* c, const Frame& frame, double now, bool initial) {
  if (c->dead || c->phase != Conn::Phase::kOpen || c->close_queued) return SendStatus::kClosing;
  // A full queue only means "slow" when the kernel will not take more either:
  // one stdin read can post thousands of events at once, and a fast client
  // must not be closed for the size of a burst. So write now and look again.
  if (c->data_queued >= options.max_queue && !initial && !c->write_blocked) {
    flush(c, now);
    if (c->dead) return SendStatus::kClosing;
  }
  if (c->data_queued < options.max_queue || initial) {
    enqueue(c, frame, EntryKind::kData);
    return SendStatus::kQueued;
  }
  if (options.slow_client == SlowClientPolicy::kDisconnect) {
    ++stats.slow_client_closes;
    log::note(1, "client " + std::to_string(c->id) + " (" + c->peer + ") is too slow: " +
                     std::to_string(c->data_queued) + " messages queued; closing with 1013");
    begin_close(c, ws::kCloseTryAgainLater, "try again later", true, options.close_timeout, now);
    return SendStatus::kClosing;
  }
  // kDrop: the oldest unwritten message makes room; a notice stands in its
  // place, so the client learns how many it missed, right where it missed them.
  size_t p = c->has_partial_front() ? 1 : 0;
  if (p < c->queue.size() && c->queue[p].kind == EntryKind::kDropNotice) {
    c->queue[p].frame.reset();  // not written yet (nothing at p is): re-encode later
  } else {
    Entry notice;
    notice.kind = EntryKind::kDropNotice;
    c->queue.insert(c->queue.begin() + static_cast<std::ptrdiff_t>(p), std::move(notice));
  }
  if (!c->warned_drop) {
    c->warned_drop = true;
    log::warn("client " + std::to_string(c->id) + " (" + c->peer +
              ") is too slow: dropping its oldest messages (counted in /metrics)");
  }
  auto victim = std::find_if(c->queue.begin() + static_cast<std::ptrdiff_t>(p) + 1, c->queue.end(),
                             [](const Entry& e) { return e.kind == EntryKind::kData; });
  ++stats.dropped;
  c->queue[p].dropped++;
  if (victim == c->queue.end()) return SendStatus::kDropped;  // only a partial one: drop the new one
  c->queue.erase(victim);
  --c->data_queued;
  enqueue(c, frame, EntryKind::kData);
  return SendStatus::kDropped;
}

void WsServer::Impl::flush(Conn* c, double now) {
  if (c->ssl) {
    flush_tls(c, now);
  } else {
    flush_plain(c, now);
  }
}

void WsServer::Impl::after_written(Conn* c, const Entry& e) {
  stats.bytes_out += e.frame->size();
  if (e.kind == EntryKind::kData || e.kind == EntryKind::kDropNotice) {
    ++stats.messages_out;
    if (e.kind == EntryKind::kData) --c->data_queued;
  } else if (e.kind == EntryKind::kClose) {
    c->close_sent = true;
  }
}

static void materialize(Conn* c, Entry& e) {
  if (e.kind == EntryKind::kPong && !e.frame) {
    e.frame = make_frame(ws::encode_frame(ws::Opcode::kPong, c->pong_payload));
    c->pong_queued = false;
  }
  if (e.kind == EntryKind::kDropNotice && !e.frame) {
    e.frame = make_text_frame("{\"type\":\"dropped\",\"count\":" + std::to_string(e.dropped) + "}");
  }
}

void WsServer::Impl::flush_plain(Conn* c, double now) {
  while (!c->queue.empty()) {
    iovec iov[kMaxIov];
    int count = 0;
    size_t total = 0;
    for (auto it = c->queue.begin(); it != c->queue.end() && count < kMaxIov; ++it, ++count) {
      materialize(c, *it);
      size_t skip = count == 0 ? c->front_offset : 0;
      iov[count].iov_base = const_cast<char*>(it->frame->data()) + skip;
      iov[count].iov_len = it->frame->size() - skip;
      total += iov[count].iov_len;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ++stats.writes_refused;
        c->write_blocked = true;
        return;
      }
      destroy(c);  // EPIPE, ECONNRESET: the peer is gone
      return;
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      Entry& front = c->queue.front();
      size_t rest = front.frame->size() - c->front_offset;
      if (left < rest) {
        c->front_offset += left;
        break;
      }
      left -= rest;
      c->front_offset = 0;
      after_written(c, front);
      c->queue.pop_front();
    }
    if (static_cast<size_t>(n) < total) {
      c->write_blocked = true;  // the kernel took what fit; EPOLLOUT resumes
      return;
    }
  }
  on_drained(c, now);
}

void WsServer::Impl::flush_tls(Conn* c, double now) {
  for (;;) {
    if (c->tls_out_off == c->tls_out.size()) {
      c->tls_out.clear();
      c->tls_out_off = 0;
      // Stage whole frames (at least one) up to about one TLS record.
      while (!c->queue.empty()) {
        Entry& e = c->queue.front();
        materialize(c, e);
        if (!c->tls_out.empty() && c->tls_out.size() + e.frame->size() > kTlsStage) break;
        c->tls_out += *e.frame;
        after_written(c, e);
        c->queue.pop_front();
      }
      if (c->tls_out.empty()) break;
    }
    ERR_clear_error();
    // Retried with the same bytes after WANT_WRITE, as OpenSSL requires.
    int r = SSL_write(c->ssl, c->tls_out.data() + c->tls_out_off,
                      static_cast<int>(c->tls_out.size() - c->tls_out_off));
    if (r > 0) {
      c->tls_out_off += static_cast<size_t>(r);
      continue;
    }
    int err = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      ++stats.writes_refused;
      c->write_blocked = true;
      return;
    }
    destroy(c);
    return;
  }
  on_drained(c, now);
}

// Queue and staging empty: finish whatever the phase was waiting for.
void WsServer::Impl::on_drained(Conn* c, double now) {
  if (c->dead || !c->queue.empty() || c->tls_out_off < c->tls_out.size()) return;
  // Our close frame is with the kernel: from here the peer owes only its
  // close, which the close grace bounds, whatever longer grace (a
  // --drain-timeout) was meant for taking the queue.
  if (c->phase == Conn::Phase::kClosing && c->close_sent) {
    c->deadline = std::min(c->deadline, now + options.close_timeout);
  }
  bool finished = c->phase == Conn::Phase::kReply ||
                  (c->phase == Conn::Phase::kClosing && c->close_sent &&
                   (c->close_received || c->reader->error_code() != 0));
  if (!finished) return;
  // Shut our side and wait for the peer's FIN: closing with unread bytes
  // would send RST, which can destroy the reply before the peer reads it.
  if (c->ssl) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
  ::shutdown(c->fd, SHUT_WR);
  c->phase = Conn::Phase::kLinger;
  c->deadline = std::min(c->deadline, now + options.close_timeout);
}

void WsServer::Impl::begin_close(Conn* c, uint16_t code, std::string_view reason, bool discard,
                                 double grace, double now) {
  if (c->close_queued || c->dead) return;
  if (discard) discard_unstarted(c);
  std::string frame = code == ws::kCloseNoStatus ? ws::encode_frame(ws::Opcode::kClose, "")
                                                 : ws::encode_close(code, reason);
  enqueue(c, make_frame(std::move(frame)), EntryKind::kClose);
  c->close_queued = true;
  c->phase = Conn::Phase::kClosing;
  c->deadline = now + grace;
  leave_open(c);
}

// Drops the queued entries not yet started: data, drop notices, pings,
// pongs. Kept: a frame partly written (its rest must follow, or the stream
// breaks), HTTP bytes (a 101 must precede every frame) and our close frame.
void WsServer::Impl::discard_unstarted(Conn* c) {
  auto first = c->queue.begin() + (c->has_partial_front() ? 1 : 0);
  // remove_if applies the predicate exactly once per entry.
  auto last = std::remove_if(first, c->queue.end(), [c](const Entry& e) {
    if (e.kind == EntryKind::kRaw || e.kind == EntryKind::kClose) return false;
    if (e.kind == EntryKind::kData) --c->data_queued;
    if (e.kind == EntryKind::kPong && !e.frame) c->pong_queued = false;
    return true;
  });
  c->queue.erase(last, c->queue.end());
}

void WsServer::Impl::leave_open(Conn* c) {
  if (!c->counted_open) return;
  c->counted_open = false;
  --stats.clients;
  closed_ids.push_back(c->id);
  needs_reap = true;  // compacts `open`
}

void WsServer::Impl::destroy(Conn* c) {
  if (c->dead) return;
  leave_open(c);
  leave_handshake(c);
  c->dead = true;
  by_id.erase(c->id);
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = nullptr;
  }
  ::close(c->fd);  // also removes it from the epoll set
  c->fd = -1;
  --stats.tcp_connections;
  c->queue.clear();
  needs_reap = true;
}

void WsServer::Impl::notify_closed() {
  while (!closed_ids.empty()) {
    std::vector<ClientId> ids;
    ids.swap(closed_ids);
    for (ClientId id : ids) {
      log::note(2, "client " + std::to_string(id) + " left");
      handler->on_close(id);
    }
  }
}

void WsServer::Impl::reap() {
  if (!needs_reap) return;
  needs_reap = false;
  open.erase(std::remove_if(open.begin(), open.end(),
                            [](Conn* c) { return !c->counted_open; }),
             open.end());
  // `ready` and `dirty` may outlive the turn: drop the dead before they are freed.
  for (auto* list : {&ready, &dirty}) {
    list->erase(std::remove_if(list->begin(), list->end(), [](Conn* c) { return c->dead; }),
                list->end());
  }
  auto dead_end = std::partition(conns.begin(), conns.end(), [](Conn* c) { return !c->dead; });
  for (auto it = dead_end; it != conns.end(); ++it) delete *it;
  conns.erase(dead_end, conns.end());
}

void WsServer::Impl::scan(double now) {
  if (listener_paused && now >= resume_accept_at && !shutting_down) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &listen_fd;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
    listener_paused = false;
  }
  std::string app_ping;
  for (Conn* c : conns) {
    if (c->dead) continue;
    if (c->phase != Conn::Phase::kOpen) {
      if (now >= c->deadline) {
        log::note(2, "connection from " + c->peer + " timed out while closing or in handshake");
        destroy(c);
      }
      continue;
    }
    if (options.ping_interval <= 0) continue;
    if (c->ping_outstanding_since > 0 && now - c->ping_outstanding_since >= options.ping_timeout) {
      ++stats.ping_timeouts;
      log::note(1, "client " + std::to_string(c->id) + " (" + c->peer +
                       ") did not answer pings; closing with 1008");
      begin_close(c, ws::kClosePolicyViolation, "ping timeout", true, options.close_timeout, now);
      continue;
    }
    if (now >= c->next_ping) {
      c->next_ping = now + options.ping_interval;
      if (c->ping_outstanding_since == 0) c->ping_outstanding_since = now;
      std::string payload = std::to_string(++c->ping_counter);
      enqueue(c, make_frame(ws::encode_frame(ws::Opcode::kPing, payload)), EntryKind::kControl);
      if (options.app_ping) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "{\"type\":\"ping\",\"timestamp\":%.3f}", wall_clock());
        enqueue_data(c, make_text_frame(buf), now);
      }
    }
  }
}

// ---------------------------------------------------------------- public (loop thread)

SendStatus WsServer::send(ClientId id, const Frame& frame, bool initial) {
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) return SendStatus::kNoClient;
  return impl_->enqueue_data(it->second, frame, now(), initial);
}

SendStatus WsServer::send_text(ClientId id, std::string_view payload) {
  return send(id, make_text_frame(payload));
}

size_t WsServer::broadcast(const Frame& frame) {
  Impl& s = *impl_;
  double t = now();
  size_t queued = 0;
  // Closing clients stay in `open` until reap(); enqueue_data skips them.
  for (size_t i = 0; i < s.open.size(); ++i) {
    if (s.enqueue_data(s.open[i], frame, t) != SendStatus::kClosing) ++queued;
  }
  return queued;
}

void WsServer::close(ClientId id, uint16_t code, std::string_view reason) {
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) return;
  impl_->begin_close(it->second, code, reason, true, impl_->options.close_timeout, now());
}

bool WsServer::watch(int fd) {
  Impl& s = *impl_;
  if (s.watched_fd >= 0) return false;  // one is all the relay needs
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &s.watched_fd;
  if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  s.watched_fd = fd;
  return true;
}

void WsServer::unwatch(int fd) {
  Impl& s = *impl_;
  if (s.watched_fd != fd || fd < 0) return;
  ::epoll_ctl(s.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  s.watched_fd = -1;
}

void WsServer::note_pong(ClientId id) {
  auto it = impl_->by_id.find(id);
  if (it != impl_->by_id.end()) it->second->ping_outstanding_since = 0;
}

// The --exit-on-eof drain: queued data first, then 1001.
void WsServer::begin_shutdown(double seconds) { impl_->start_shutdown(seconds, false, now()); }

// discard: unstarted queued data is dropped so 1001 goes out next (a
// signal); otherwise clients get their queues first (a drain).
void WsServer::Impl::start_shutdown(double seconds, bool discard, double now) {
  if (shutting_down) return;  // a signal shortens a running drain: on_signal
  shutting_down = true;
  if (listen_fd >= 0) {
    ::close(listen_fd);  // also leaves the epoll set
    listen_fd = -1;
  }
  for (Conn* c : conns) {
    if (c->dead) continue;
    if (c->phase == Conn::Phase::kOpen) {
      begin_close(c, ws::kCloseGoingAway, "going away", discard, seconds, now);
    } else if (c->phase == Conn::Phase::kHandshake) {
      destroy(c);
    } else {
      c->deadline = std::min(c->deadline, now + seconds);
    }
  }
}

// SIGINT/SIGTERM. The self-pipe is never drained (it stays readable), so it
// leaves the epoll set at the first signal; that signal does all there is
// to do. A signal means "stop now": unstarted queued data is discarded so
// 1001 goes out next (a client with a backlog would otherwise miss it), and
// during a drain (--exit-on-eof) every grace is cut to the close grace: an
// operator's signal must not wait out a long --drain-timeout.
void WsServer::Impl::on_signal(double now) {
  ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, shutdown::fd(), nullptr);
  shutdown_fd_watched = false;
  if (!shutting_down) {
    start_shutdown(options.close_timeout, true, now);
    return;
  }
  for (Conn* c : conns) {
    if (c->dead) continue;
    if (c->phase == Conn::Phase::kClosing && !c->close_sent) discard_unstarted(c);
    c->deadline = std::min(c->deadline, now + options.close_timeout);
  }
}

bool WsServer::shutting_down() const { return impl_->shutting_down; }

const ServerStats& WsServer::stats() const { return impl_->stats; }

}  // namespace smws::net
