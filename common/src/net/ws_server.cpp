// SPDX-License-Identifier: Apache-2.0
// The epoll loop behind WsServer and the lifecycle of its connections:
// accept, handshake, open, closing, linger. Queues are send_queue.cpp's,
// bytes on the wire transport.cpp's, the upgrade decision
// upgrade_admission.cpp's, plain HTTP http_routes.cpp's. Everything here
// runs on the loop thread except wake(). Model and reasons:
// docs/architecture.md.
#include "smws/net/ws_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "smws/clock.h"
#include "smws/duration_text.h"
#include "smws/log.h"
#include "smws/net/tls.h"
#include "smws/net/transport.h"
#include "smws/net/upgrade_admission.h"
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
// Connections accepted per listener event before serving the others.
constexpr int kMaxAcceptPerTurn = 256;
// After EMFILE/ENFILE the listener pauses instead of spinning: 100 ms, then
// twice as long after each failure in a row, up to 2 s; the warning is
// logged at most once per 10 s, counting the failures in between (a
// descriptor shortage lasts; a line every 100 ms only floods the journal).
constexpr double kAcceptPause = 0.1;
constexpr double kAcceptPauseMax = 2.0;
constexpr double kAcceptWarnInterval = 10.0;
// Connections refused at accept (503: too many handshakes from their
// address) that may still be closing, per address; beyond, new ones from
// it are closed at once. Each lingers until the peer's FIN or the close
// grace, so a flood from one address holds at most these descriptors more.
constexpr size_t kMaxRefusingPerAddress = 16;

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

// Seconds on the loop's monotonic clock (timers, deadlines).
double mono_now() { return monotonic_seconds(); }

}  // namespace

// One TCP connection, from accept to close. Owned by Impl::conns_ (loop thread).
struct Conn {
  enum class Phase {
    kHandshake,  // TLS handshake and/or HTTP request head being read
    kOpen,       // WebSocket open: broadcasts go to it
    kReply,      // HTTP reply (or 4xx refusal) being written; then kLinger
    kClosing,    // our close frame is queued or sent; waiting for the peer's
    kLinger,     // done: write side shut, reading until EOF or deadline
  };

  // Which count of connections not yet open holds this one (Impl::handshaking,
  // and per AddressKey handshakes_by_key or refusing_by_key).
  enum class Slot : uint8_t {
    kNone,
    kHandshake,  // in its handshake: counted in handshaking and handshakes_by_key
    kRefusing,   // refused at accept, closing: counted in handshaking and refusing_by_key
  };

  ClientId id = 0;
  Transport io;
  Phase phase = Phase::kHandshake;
  std::string peer;
  std::string address;        // the peer's IP, without port
  Slot slot = Slot::kNone;
  std::string handshake_key;  // its AddressKey at accept ("" : not counted per address)
  std::string client_key;     // its AddressKey as an open client ("" : not counted)
  double deadline = 0;  // for every phase but kOpen: when it is dropped

  std::string head;  // kHandshake: request bytes so far
  std::unique_ptr<ws::FrameReader> reader;  // from kOpen on

  SendQueue queue;
  bool write_blocked = false;  // kernel buffer full: wait for EPOLLOUT
  bool in_dirty = false;       // listed in dirty_ (needs a flush)
  bool in_ready = false;       // listed in ready_ (more bytes to read)
  bool counted_open = false;   // counted in stats.clients, on_open called
  bool joined = false;         // in the broadcast list (join())
  bool warned_drop = false;    // the first drop was logged (once per client)
  bool close_queued = false;
  bool close_sent = false;
  bool close_received = false;
  bool dead = false;

  double next_ping = 0;
  // When the oldest ping not yet answered was written (0: none). Counted
  // from the write, not the queueing: a ping behind a long backlog (a big
  // snapshot on a slow link) must not time out a client that reads it all;
  // a client that does not read at all is caught by max_queue instead.
  double ping_outstanding_since = 0;
  bool ping_queued = false;  // a ping is queued, not yet written: no second one
  // The TCP stream position just past the outstanding ping (at most a
  // frame's worth of later bytes past it, one partly written); 0 when the
  // kernel could not tell. While the peer has not acknowledged up to here, it has not even
  // received the ping: it is not reading, which is not the same as silent.
  uint64_t ping_end = 0;
  uint64_t ping_acked = 0;  // bytes the peer had acknowledged at that write
  // While a ping waits in the queue behind a backlog: since when the peer's
  // TCP has acknowledged nothing more (stall_acked bytes). A peer that takes
  // no byte for ping_timeout is not reading at all, or gone.
  double stall_since = 0;
  uint64_t stall_acked = 0;
  uint64_t ping_counter = 0;

  bool has_unwritten() const { return !queue.empty() || io.has_staged(); }
};

// A fd the tool watches (watch()). Its address is the epoll tag; unwatch()
// only disarms it, so a tag still in this turn's event list stays valid.
struct Watch {
  int fd = -1;
  std::function<void()> on_readable;
};

struct WsServer::Impl {
  Impl(ServerOptions o, WsServerHandler* h) : options(std::move(o)), handler(h) {}

  ServerOptions options;
  WsServerHandler* handler;
  std::unique_ptr<TlsContext> tls;
  HttpRoutes routes;
  AdmissionRules admission;
  ServerStats stats;

  int listen_fd = -1;
  int epoll_fd = -1;
  int event_fd = -1;
  uint16_t port = 0;
  bool listener_paused = false;
  double resume_accept_at = 0;
  double accept_pause = 0;         // the pause after the next accept failure (0: the first)
  double next_accept_warning = 0;  // a warning before this is not logged, only counted
  uint64_t accept_errors_untold = 0;
  bool shutdown_fd_watched = false;
  std::vector<std::unique_ptr<Watch>> watches;  // freed with the server
  bool shutting_down = false;
  size_t handshaking = 0;     // conns in Slot::kHandshake or kRefusing (max_handshaking)
  bool warned_shed = false;   // the first shed accept was logged
  HostRule host_rule;
  // Per AddressKey: connections in their handshake, refused at accept and
  // closing, open clients. An entry goes when its count reaches 0, so the
  // maps hold only addresses with connections.
  std::unordered_map<std::string, size_t> handshakes_by_key;
  std::unordered_map<std::string, size_t> refusing_by_key;
  std::unordered_map<std::string, size_t> clients_by_key;

  std::atomic<bool> wake_pending{false};

  ClientId next_id = 1;
  std::vector<Conn*> conns;   // every live connection (owning; deleted in reap)
  std::vector<Conn*> open;    // joined kOpen clients, the broadcast list (compacted in reap)
  std::unordered_map<ClientId, Conn*> by_id;  // kOpen and kClosing clients
  std::vector<Conn*> dirty;   // queued bytes waiting for a flush
  std::vector<Conn*> ready;   // stopped reading at the per-turn cap
  std::vector<ClientId> closed_ids;  // on_close still to be called
  bool needs_reap = false;

  double scan_period = 0.25;
  double next_scan = 0;
  std::vector<char> read_buf = std::vector<char>(kReadChunk);

  // --- setup ---
  Status open_listener();

  // --- loop ---
  void accept_all(double now);
  void handle_event(Conn* c, uint32_t events, double now);
  void read_some(Conn* c, double now);
  void on_bytes(Conn* c, const char* data, size_t n, double now);
  void on_head(Conn* c, double now);
  void accept_upgrade(Conn* c, HttpRequest request, std::optional<auth::AuthResult> who, double now);
  void refuse(Conn* c, const HttpReply& reply, bool head_only, double now);
  void plain_on_tls(Conn* c, double now);
  void on_frames(Conn* c, double now);
  void flush(Conn* c, double now);
  void on_drained(Conn* c, double now);
  void scan(double now);
  std::string unanswered_ping_cause(Conn* c) const;
  void close_ping_timeout(Conn* c, const std::string& cause, double now);
  bool check_stalled_ping(Conn* c, double now);
  void begin_close(Conn* c, uint16_t code, std::string_view reason, bool discard,
                   double grace, double now);
  void leave_open(Conn* c);
  // The connection's handshake is over (answered, upgraded or gone): its
  // Slot::kHandshake is freed. A kRefusing slot is held until destroy().
  void leave_handshake(Conn* c) {
    if (c->slot == Conn::Slot::kHandshake) release_slot(c);
  }
  void release_slot(Conn* c);
  void refuse_at_accept(Conn* c, double now);
  void note_accept_error(int error, double now);
  std::string key_of(const std::string& address, const HttpRequest* request) const {
    return options.address_key ? options.address_key(address, request) : address;
  }
  void start_shutdown(double seconds, bool discard, double now);
  void on_signal(double now);
  void destroy(Conn* c);
  void reap();
  void notify_closed();

  // --- queueing ---
  // bounded: held to max_queue (everything but what join() queues first).
  SendStatus enqueue_data(Conn* c, const Frame& frame, double now, bool bounded = true);
  void enqueue(Conn* c, Frame frame, EntryKind kind) {
    c->queue.push(std::move(frame), kind);
    mark_dirty(c);
  }
  // The watch whose epoll tag this is, or null (then it is a connection).
  Watch* watch_for(void* tag) const {
    for (const auto& w : watches) {
      if (w.get() == tag) return w.get();
    }
    return nullptr;
  }
  void mark_dirty(Conn* c) {
    if (!c->in_dirty) {
      c->in_dirty = true;
      dirty.push_back(c);
    }
  }
  Conn* find(ClientId id) const {
    auto it = by_id.find(id);
    return it == by_id.end() ? nullptr : it->second;
  }
};

// ---------------------------------------------------------------- setup

Status WsServer::Impl::open_listener() {
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
    return Status::Error(Status::kCantCreate, "cannot listen on " + where + ": " + gai_strerror(rc));
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
    // EACCES: a privileged port, or a policy (SELinux) forbids it.
    return Status::Error(last_errno == EACCES ? Status::kPermission : Status::kCantCreate,
                         last_errno, "cannot listen on " + where + ": " + log::errno_text(last_errno));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return Status::Ok();
}

WsServer::WsServer(ServerOptions options, WsServerHandler* handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {}

WsServer::~WsServer() {
  for (Conn* c : impl_->conns) delete c;  // ~Transport closes the socket
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  if (impl_->epoll_fd >= 0) ::close(impl_->epoll_fd);
  if (impl_->event_fd >= 0) ::close(impl_->event_fd);
}

void WsServer::route(std::string path, RouteHandler handler, RouteAccess access) {
  impl_->routes.add(std::move(path), std::move(handler), access);
}

Status WsServer::open() {
  Impl& s = *impl_;
  if (s.options.slow_client == SlowClientPolicy::kDrop && !s.options.drop_notice) {
    return Status::Error(Status::kUsage, "the drop policy needs a drop notice to send");
  }
  s.admission.allow_origins = s.options.allow_origins;
  s.admission.token = s.options.token;
  s.admission.max_clients = s.options.max_clients;
  s.admission.max_clients_per_address = s.options.max_clients_per_address;
  s.host_rule.loopback = is_loopback_address(s.options.host);
  for (const std::string& h : s.options.allow_hosts) {
    s.host_rule.allow_hosts.push_back(normalize_host_name(h));
  }
  if (!s.options.tls_cert.empty() || !s.options.tls_key.empty()) {
    if (s.options.tls_cert.empty() || s.options.tls_key.empty()) {
      return Status::Error(Status::kUsage, "TLS needs both a certificate and a key");
    }
    Status st = TlsContext::load_server(s.options.tls_cert, s.options.tls_key, &s.tls);
    if (!st.ok()) return st;
  }
  if (Status st = s.open_listener(); !st.ok()) return st;
  s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  s.event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.epoll_fd < 0 || s.event_fd < 0) {
    return Status::Error(Status::kSystem, errno, "cannot create epoll/eventfd: " + log::errno_text(errno));
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
  return Status::Ok();
}

uint16_t WsServer::bound_port() const { return impl_->port; }

std::string WsServer::url() const {
  const Impl& s = *impl_;
  std::string host = s.options.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(s.tls ? "wss://" : "ws://") + host + ":" + std::to_string(s.port) +
         s.options.path;
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
  s.next_scan = mono_now() + s.scan_period;
  for (;;) {
    double t = mono_now();
    int timeout_ms = 0;
    if (s.ready.empty()) {
      timeout_ms = static_cast<int>(std::ceil(std::max(0.0, s.next_scan - t) * 1000));
    }
    int n = ::epoll_wait(s.epoll_fd, events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) {
      log::error("epoll_wait: " + log::errno_text(errno));
      n = 0;
    }
    t = mono_now();
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &s.listen_fd) {
        s.accept_all(t);
      } else if (tag == &s.event_fd) {
        uint64_t count;
        [[maybe_unused]] ssize_t r = ::read(s.event_fd, &count, sizeof count);
        s.wake_pending.store(false);
        s.handler->on_wake();
      } else if (tag == &s.shutdown_fd_watched) {
        s.on_signal(t);
      } else if (Watch* w = s.watch_for(tag)) {
        if (w->fd >= 0) w->on_readable();
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
      s.handler->on_tick();
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
        note_accept_error(errno, now);
        return;
      }
      accept_pause = 0;  // EAGAIN: all taken, no shortage
      return;
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
    std::string peer = format_addr(ss);
    std::string address = address_of_peer(peer);
    std::string key = options.max_handshaking_per_address > 0 ? key_of(address, nullptr) : std::string();
    bool over_address = false;
    if (!key.empty()) {
      auto it = handshakes_by_key.find(key);
      over_address = it != handshakes_by_key.end() && it->second >= options.max_handshaking_per_address;
    }
    if (over_address) {
      // A reply can be written only on plain TCP before the client speaks
      // (TLS first needs its handshake), and only so many may be closing.
      auto it = refusing_by_key.find(key);
      if (tls || (it != refusing_by_key.end() && it->second >= kMaxRefusingPerAddress)) {
        ::close(fd);
        ++stats.accepts_shed;
        ++stats.refused_by_reason[static_cast<size_t>(RefusalReason::kHandshakesPerAddress)];
        continue;
      }
    }
    int one = 1;
    // Events are small and latency matters; writes are already batched.
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new Conn;
    c->id = next_id++;
    c->peer = std::move(peer);
    c->address = std::move(address);
    c->deadline = now + options.handshake_timeout;
    if (!c->io.attach(fd, tls.get())) {
      log::warn("TLS: cannot set up a connection from " + c->peer);
      ::close(fd);
      delete c;
      continue;
    }
    conns.push_back(c);
    ++handshaking;
    ++stats.tcp_connections;
    c->handshake_key = key;
    if (over_address) {
      c->slot = Conn::Slot::kRefusing;
      if (!key.empty()) ++refusing_by_key[key];
    } else {
      c->slot = Conn::Slot::kHandshake;
      if (!key.empty()) ++handshakes_by_key[key];
    }
    // Edge-triggered, registered once: no epoll_ctl per blocked write.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    if (over_address) refuse_at_accept(c, now);
  }
}

void WsServer::Impl::note_accept_error(int error, double now) {
  ++stats.accept_errors;
  accept_pause = accept_pause == 0 ? kAcceptPause : std::min(accept_pause * 2, kAcceptPauseMax);
  if (now >= next_accept_warning) {
    log::warn("cannot accept more connections: " + log::errno_text(error) +
              (accept_errors_untold > 0
                   ? " (" + std::to_string(accept_errors_untold) + " more times since the last line)"
                   : std::string()) +
              "; pausing accepts for up to " + duration_text(kAcceptPauseMax) +
              " at a time (raise the open-file limit, or allow fewer clients)");
    next_accept_warning = now + kAcceptWarnInterval;
    accept_errors_untold = 0;
  } else {
    ++accept_errors_untold;
  }
  ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
  listener_paused = true;
  resume_accept_at = now + accept_pause;
}

// 503 with Retry-After before any request was read: the client reads it
// as the answer to the request it sends (or has sent); kReply discards
// that request while the answer goes out, then lingers as any reply does.
void WsServer::Impl::refuse_at_accept(Conn* c, double now) {
  HttpReply reply = handshakes_per_address_refusal();
  ++stats.refused_by_reason[static_cast<size_t>(RefusalReason::kHandshakesPerAddress)];
  RefusedUpgrade r{c->peer, nullptr, RefusalReason::kHandshakesPerAddress, false, reply.status,
                   reply.body.substr(0, reply.body.size() - 1)};
  log::note(2, "connection from " + c->peer + ": 503 " + r.message);
  handler->on_refused(r);
  refuse(c, reply, false, now);
}

void WsServer::Impl::release_slot(Conn* c) {
  if (c->slot == Conn::Slot::kNone) return;
  auto& by_key = c->slot == Conn::Slot::kHandshake ? handshakes_by_key : refusing_by_key;
  c->slot = Conn::Slot::kNone;
  --handshaking;
  if (c->handshake_key.empty()) return;
  auto it = by_key.find(c->handshake_key);
  if (it != by_key.end() && --it->second == 0) by_key.erase(it);
}

void WsServer::Impl::handle_event(Conn* c, uint32_t events, double now) {
  if (c->dead) return;
  // TLS reads may need writes (handshake) and vice versa, so a TLS connection
  // tries both on any event.
  bool tls = c->io.tls();
  if ((events & EPOLLOUT) || tls) c->write_blocked = false;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) || tls) read_some(c, now);
  if (!c->dead && !c->write_blocked && c->has_unwritten()) flush(c, now);
}

void WsServer::Impl::read_some(Conn* c, double now) {
  size_t budget = kMaxReadPerTurn;
  while (!c->dead) {
    ssize_t n = c->io.read(read_buf.data(), read_buf.size(), c->phase == Conn::Phase::kHandshake,
                           c->peer);
    if (n == -1) return;
    if (n == Transport::kPlainOnTls) {
      plain_on_tls(c, now);
      return;
    }
    if (n == 0 && !c->write_blocked && c->has_unwritten()) {
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
  if (!routes.any_host(request->path)) {
    if (std::optional<HttpReply> wrong_host = host_refusal(*request, host_rule)) {
      ++stats.refused_by_reason[static_cast<size_t>(RefusalReason::kHost)];
      RefusedUpgrade r{c->peer, &*request, RefusalReason::kHost, false, wrong_host->status,
                       wrong_host->body.substr(0, wrong_host->body.size() - 1)};
      log::note(2, "refused a request from " + c->peer + ": 421 " + r.message);
      handler->on_refused(r);
      refuse(c, *wrong_host, head_only, now);
      return;
    }
  }
  if (request->path == options.path ||
      std::find(options.extra_paths.begin(), options.extra_paths.end(), request->path) !=
          options.extra_paths.end()) {
    std::string key = options.max_clients_per_address > 0 ? key_of(c->address, &*request) : std::string();
    size_t from_address = 0;
    if (!key.empty()) {
      auto it = clients_by_key.find(key);
      if (it != clients_by_key.end()) from_address = it->second;
    }
    Admission a = admit_upgrade(*request, admission, stats.clients, shutting_down, from_address);
    if (a.verdict == Admission::Verdict::kNotUpgrade) {
      refuse(c, a.reply, head_only, now);
      return;
    }
    if (a.verdict == Admission::Verdict::kRefuse) {
      ++stats.refused_by_reason[static_cast<size_t>(a.reason)];
      RefusedUpgrade r{c->peer, &*request, a.reason, a.token_sent, a.reply.status,
                       a.reply.body.substr(0, a.reply.body.size() - 1)};
      log::note(2, "refused WebSocket from " + c->peer + ": " + std::to_string(r.status) + " " +
                       r.message);
      handler->on_refused(r);
      refuse(c, a.reply, false, now);
      return;
    }
    std::optional<auth::AuthResult> who;
    if (options.authenticate) {
      who = options.authenticate(*request);
      if (!who->admitted) {
        HttpReply reply = text_reply(who->http_status ? who->http_status : 401,
                                     who->http_status == 403 ? "forbidden: " + who->reason
                                                             : "a valid token is required (" + who->reason + ")");
        if (reply.status == 401) reply.headers.emplace_back("WWW-Authenticate", "Bearer");
        ++stats.refused_by_reason[static_cast<size_t>(RefusalReason::kToken)];
        RefusedUpgrade r{c->peer, &*request, RefusalReason::kToken,
                         request->header("authorization") || !presented_tokens(*request).empty(), reply.status,
                         reply.body.substr(0, reply.body.size() - 1)};
        log::note(2, "refused WebSocket from " + c->peer + ": " + std::to_string(r.status) + " " + r.message);
        handler->on_refused(r);
        refuse(c, reply, false, now);
        return;
      }
    }
    std::string rest = c->head.substr(end);
    c->head.clear();
    c->head.shrink_to_fit();
    c->client_key = std::move(key);
    accept_upgrade(c, std::move(*request), std::move(who), now);
    // Frames the client sent right behind its request.
    if (!rest.empty() && !c->dead) on_bytes(c, rest.data(), rest.size(), now);
    return;
  }
  refuse(c, routes.serve(*request, options.token, options.authenticate), head_only, now);
}

void WsServer::Impl::refuse(Conn* c, const HttpReply& reply, bool head_only, double now) {
  ++stats.http_status[reply.status];
  c->head.clear();
  leave_handshake(c);
  c->phase = Conn::Phase::kReply;
  c->deadline = now + options.close_timeout;
  enqueue(c, make_frame(serialize_reply(reply, head_only)), EntryKind::kRaw);
}

// Plain HTTP (or ws://) sent to our TLS port: answered in plain text, like
// nginx, instead of a TLS alert the client cannot show. The request is not
// read; kReply discards it while the answer goes out.
void WsServer::Impl::plain_on_tls(Conn* c, double now) {
  ++stats.refused_by_reason[static_cast<size_t>(RefusalReason::kNotTls)];
  HttpReply reply = text_reply(
      400, "this port speaks TLS: use https:// or wss:// (a plain HTTP request was sent to it)");
  RefusedUpgrade r{c->peer, nullptr, RefusalReason::kNotTls, false, reply.status,
                   reply.body.substr(0, reply.body.size() - 1)};
  log::note(2, "plain HTTP from " + c->peer + " on the TLS port: 400");
  handler->on_refused(r);
  refuse(c, reply, false, now);
}

void WsServer::Impl::accept_upgrade(Conn* c, HttpRequest request, std::optional<auth::AuthResult> who,
                                    double now) {
  // The token a browser offers as a subprotocol is never echoed: the 101
  // names only the protocol (selected_subprotocol).
  enqueue(c, make_frame(switching_protocols_response(*request.header("sec-websocket-key"),
                                                     selected_subprotocol(request))),
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
  if (!c->client_key.empty()) ++clients_by_key[c->client_key];
  by_id[c->id] = c;
  ++stats.http_status[101];
  ++stats.clients;
  ++stats.connections_total;
  log::note(2, "client " + std::to_string(c->id) + " connected from " + c->peer);
  ClientInfo info;
  info.id = c->id;
  info.peer = c->peer;
  info.request = std::move(request);
  info.auth = std::move(who);
  handler->on_open(info);
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
          c->queue.push_pong(msg.payload);
          mark_dirty(c);
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

SendStatus WsServer::Impl::enqueue_data(Conn* c, const Frame& frame, double now, bool bounded) {
  if (c->dead || c->phase != Conn::Phase::kOpen || c->close_queued) return SendStatus::kClosing;
  // Full: max_queue messages (unless unbounded by count: what join() queues
  // first), or max_queue_bytes of them (always).
  auto full = [&] {
    return (bounded && c->queue.data_queued() >= options.max_queue) ||
           (options.max_queue_bytes > 0 && c->queue.data_bytes() >= options.max_queue_bytes);
  };
  // A full queue only means "slow" when the kernel will not take more either:
  // one stdin read can post thousands of events at once, and a fast client
  // must not be closed for the size of a burst. So write now and look again.
  if (full() && !c->write_blocked) {
    flush(c, now);
    if (c->dead) return SendStatus::kClosing;
  }
  if (!full()) {
    enqueue(c, frame, EntryKind::kData);
    return SendStatus::kQueued;
  }
  if (options.slow_client == SlowClientPolicy::kDisconnect) {
    ++stats.slow_client_closes;
    log::note(1, "client " + std::to_string(c->id) + " (" + c->peer + ") is too slow: " +
                     std::to_string(c->queue.data_queued()) + " messages (" +
                     std::to_string(c->queue.data_bytes()) + " bytes) queued; closing with 1013");
    begin_close(c, ws::kCloseTryAgainLater, "try again later", true, options.close_timeout, now);
    return SendStatus::kClosing;
  }
  // kDrop: the oldest unwritten messages make room; a notice stands in their
  // place, so the client learns how many it missed, right where it missed them.
  if (!c->warned_drop) {
    c->warned_drop = true;
    log::warn("client " + std::to_string(c->id) + " (" + c->peer +
              ") is too slow: dropping its oldest messages (counted in /metrics)");
  }
  stats.dropped += c->queue.drop_oldest_and_push(
      frame, options.max_queue_bytes > 0 ? options.max_queue_bytes : SIZE_MAX);
  mark_dirty(c);
  return SendStatus::kDropped;
}

void WsServer::Impl::flush(Conn* c, double now) {
  WriteTally tally;
  Transport::Write result = c->io.write(c->queue, options.drop_notice, &tally);
  stats.bytes_out += tally.bytes;
  stats.messages_out += tally.messages;
  stats.writes_refused += tally.refused;
  if (tally.close_written) c->close_sent = true;
  if (tally.ping_written) {
    c->ping_queued = false;
    c->stall_since = 0;
    if (c->ping_outstanding_since == 0) {
      c->ping_outstanding_since = now;
      TcpProgress p;
      // The kernel's count now, less what this write put after the ping.
      c->ping_end = c->io.tcp_progress(&p) ? p.written + c->io.staged_bytes() - tally.bytes_after_ping : 0;
      c->ping_acked = p.acked;
    }
  }
  switch (result) {
    case Transport::Write::kDrained:
      on_drained(c, now);
      return;
    case Transport::Write::kBlocked:
      c->write_blocked = true;  // EPOLLOUT (TLS: any event) resumes
      return;
    case Transport::Write::kFailed:
      destroy(c);  // EPIPE, ECONNRESET: the peer is gone
      return;
  }
}

// Queue and staging empty: finish whatever the phase was waiting for.
void WsServer::Impl::on_drained(Conn* c, double now) {
  if (c->dead || c->has_unwritten()) return;
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
  c->io.shutdown_write();
  c->phase = Conn::Phase::kLinger;
  c->deadline = std::min(c->deadline, now + options.close_timeout);
}

// Less room than one small frame: the peer takes bytes only as it reads.
constexpr uint32_t kClosedWindow = 1024;

// Why a ping went unanswered, for the operator (the close is 1008 "ping
// timeout" whatever the reason, as SPEC says): "" when the peer received
// the ping and stayed silent. Else its TCP has not acknowledged the ping,
// yet is alive: it took some bytes before the ping since, or advertises
// (almost) no receive window. Its application reads too slowly to have
// reached the ping. A host that is gone acknowledges nothing and keeps the
// window it last advertised.
std::string WsServer::Impl::unanswered_ping_cause(Conn* c) const {
  if (c->ping_end == 0) return "";
  TcpProgress p;
  if (!c->io.tcp_progress(&p) || p.acked >= c->ping_end) return "";
  if (p.acked > c->ping_acked || (p.window_known && p.peer_window < kClosedWindow)) {
    return "it has not yet received the ping: it reads too slowly";
  }
  return "it acknowledges nothing we send: gone?";
}

void WsServer::Impl::close_ping_timeout(Conn* c, const std::string& cause, double now) {
  ++stats.ping_timeouts;
  log::note(1, "client " + std::to_string(c->id) + " (" + c->peer + ") did not answer pings" +
                   (cause.empty() ? std::string() : " (" + cause + ")") + "; closing with 1008");
  begin_close(c, ws::kClosePolicyViolation, "ping timeout", true, options.close_timeout, now);
}

// A ping that cannot be written (the kernel is full: the peer takes nothing)
// starts no timeout, so a burst followed by quiet would leave a peer that
// stopped reading, or vanished, open with its backlog until TCP gives up
// (~15 min), the queue limit never reached. So while a ping waits, the
// peer's acknowledgements are watched: none for ping_timeout is a ping
// timeout too. A peer that takes bytes, however slowly, is left to the
// queue limit. True when it closed the connection.
bool WsServer::Impl::check_stalled_ping(Conn* c, double now) {
  if (!c->ping_queued || !c->write_blocked) {
    c->stall_since = 0;
    return false;
  }
  TcpProgress p;
  if (!c->io.tcp_progress(&p)) return false;
  if (c->stall_since == 0 || p.acked != c->stall_acked) {
    c->stall_since = now;
    c->stall_acked = p.acked;
    return false;
  }
  if (now - c->stall_since < options.ping_timeout) return false;
  std::string cause = "it has taken no byte in " + duration_text(options.ping_timeout) + ", the ping waiting behind them: " +
                      (p.window_known && p.peer_window < kClosedWindow ? "it stopped reading" : "gone?");
  close_ping_timeout(c, cause, now);
  return true;
}

void WsServer::Impl::begin_close(Conn* c, uint16_t code, std::string_view reason, bool discard,
                                 double grace, double now) {
  if (c->close_queued || c->dead) return;
  if (discard) c->queue.discard_unstarted();
  std::string frame = code == ws::kCloseNoStatus ? ws::encode_frame(ws::Opcode::kClose, "")
                                                 : ws::encode_close(code, reason);
  enqueue(c, make_frame(std::move(frame)), EntryKind::kClose);
  c->close_queued = true;
  c->phase = Conn::Phase::kClosing;
  c->deadline = now + grace;
  leave_open(c);
}

void WsServer::Impl::leave_open(Conn* c) {
  if (!c->counted_open) return;
  c->counted_open = false;
  --stats.clients;
  if (!c->client_key.empty()) {
    auto it = clients_by_key.find(c->client_key);
    if (it != clients_by_key.end() && --it->second == 0) clients_by_key.erase(it);
  }
  closed_ids.push_back(c->id);
  needs_reap = true;  // compacts `open`
}

void WsServer::Impl::destroy(Conn* c) {
  if (c->dead) return;
  leave_open(c);
  release_slot(c);
  c->dead = true;
  by_id.erase(c->id);
  c->io.close();  // also removes it from the epoll set
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
  open.erase(std::remove_if(open.begin(), open.end(), [](Conn* c) { return !c->counted_open; }),
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
    if (check_stalled_ping(c, now)) continue;
    if (c->ping_outstanding_since > 0 && now - c->ping_outstanding_since >= options.ping_timeout) {
      close_ping_timeout(c, unanswered_ping_cause(c), now);
      continue;
    }
    if (now >= c->next_ping) {
      c->next_ping = now + options.ping_interval;
      // One ping in the queue at a time: behind a backlog, more would only
      // pile up (the first one written starts the timeout).
      if (!c->ping_queued) {
        c->ping_queued = true;
        std::string payload = std::to_string(++c->ping_counter);
        enqueue(c, make_frame(ws::encode_frame(ws::Opcode::kPing, payload)), EntryKind::kControl);
      }
      if (options.keepalive) enqueue_data(c, make_text_frame(options.keepalive()), now);
    }
  }
}

// ---------------------------------------------------------------- public (loop thread)

SendStatus WsServer::send(ClientId id, const Frame& frame) {
  Conn* c = impl_->find(id);
  if (!c) return SendStatus::kNoClient;
  return impl_->enqueue_data(c, frame, mono_now());
}

SendStatus WsServer::send_text(ClientId id, std::string_view payload) {
  return send(id, make_text_frame(payload));
}

bool WsServer::join(ClientId id, const std::vector<Frame>& first) {
  Conn* c = impl_->find(id);
  if (!c || c->joined || !c->counted_open || c->close_queued) return false;
  double t = mono_now();
  for (const Frame& f : first) {
    if (impl_->enqueue_data(c, f, t, false) == SendStatus::kClosing) return false;
  }
  c->joined = true;
  impl_->open.push_back(c);
  return true;
}

size_t WsServer::broadcast(const Frame& frame) {
  Impl& s = *impl_;
  double t = mono_now();
  size_t queued = 0;
  // Closing clients stay in `open` until reap(); enqueue_data skips them.
  for (size_t i = 0; i < s.open.size(); ++i) {
    if (s.enqueue_data(s.open[i], frame, t) != SendStatus::kClosing) ++queued;
  }
  return queued;
}

void WsServer::close(ClientId id, uint16_t code, std::string_view reason) {
  Conn* c = impl_->find(id);
  if (!c) return;
  impl_->begin_close(c, code, reason, true, impl_->options.close_timeout, mono_now());
}

bool WsServer::watch(int fd, std::function<void()> on_readable) {
  Impl& s = *impl_;
  auto w = std::make_unique<Watch>();
  w->fd = fd;
  w->on_readable = std::move(on_readable);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = w.get();
  if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  s.watches.push_back(std::move(w));
  return true;
}

void WsServer::unwatch(int fd) {
  if (fd < 0) return;
  for (auto& w : impl_->watches) {
    if (w->fd != fd) continue;
    ::epoll_ctl(impl_->epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    w->fd = -1;  // the callback may be running: it is dropped with the server
  }
}

void WsServer::note_pong(ClientId id) {
  auto it = impl_->by_id.find(id);
  if (it != impl_->by_id.end()) it->second->ping_outstanding_since = 0;
}

// The --exit-on-eof drain: queued data first, then 1001.
void WsServer::begin_shutdown(double seconds) {
  impl_->start_shutdown(seconds, false, mono_now());
}

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
    if (c->phase == Conn::Phase::kClosing && !c->close_sent) c->queue.discard_unstarted();
    c->deadline = std::min(c->deadline, now + options.close_timeout);
  }
}

const ServerStats& WsServer::stats() const { return impl_->stats; }

}  // namespace smws::net
