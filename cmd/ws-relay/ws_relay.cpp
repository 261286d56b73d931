// SPDX-License-Identifier: Apache-2.0
// ws-relay's flags, their validation, and the wiring of a relay::Relay (the
// relay's logic, common/src/relay/) to a net::WsServer (the sockets). The
// main thread runs the server's loop; relay.h says which thread calls what.
#include "ws_relay.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "smws/auth/audit_chain.h"
#include "smws/auth/users_file.h"
#include "smws/clock.h"
#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/listen_address.h"
#include "smws/log.h"
#include "smws/net/ws_server.h"
#include "smws/protocol.h"
#include "smws/protocol_messages.h"
#include "smws/redis_stream.h"
#include "smws/relay/redis_flags.h"
#include "smws/auth/cidr.h"
#include "smws/relay/fd_budget.h"
#include "smws/relay/relay.h"
#include "smws/relay/routes.h"
#include "smws/status.h"

namespace smws {

void setup_ws_relay(CLI::App& app, RelayOptions& o) {
  app.description(
      "Broadcast NDJSON events from stdin to WebSocket clients; print their messages on stdout.");
  app.add_option("--listen", o.listen, "Address to listen on, HOST:PORT (port 0: any free port)")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("--path", o.path, "WebSocket path")->type_name("PATH")->capture_default_str();
  app.add_option("--max-queue", o.max_queue, "Messages queued per client before it counts as slow")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--slow-client", o.slow_client,
                 "What to do with a client whose queue is full: disconnect (close 1013) or drop "
                 "(oldest messages, then a 'dropped' notice)")
      ->check(CLI::IsMember({"disconnect", "drop"}).description(""))
      ->type_name("disconnect|drop")
      ->capture_default_str();
  app.add_option("--history", o.history, "Events replayed to a new client after its snapshot")
      ->type_name("N")
      ->capture_default_str();
  app.add_flag("--seq", o.seq, "Stamp every broadcast event with \"seq\":N; enables ?since=N");
  app.add_option("--ping-interval", o.ping_interval, "Seconds between WebSocket pings (0: none)")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--ping-timeout", o.ping_timeout,
                 "Close a client (1008) whose pong is this late [default: 2x interval]")
      ->check(kSeconds);
  app.add_flag("--app-ping", o.app_ping, "Also send {\"type\":\"ping\"} messages at each ping");
  app.add_option("--max-queue-bytes", o.max_queue_bytes,
                 "Bytes queued per client (snapshot, history and replies included) before it counts "
                 "as slow")
      ->check(CLI::Range(size_t{1}, size_t{1} << 40).description(""))
      ->type_name("BYTES")
      ->capture_default_str();
  app.add_option("--max-clients-per-ip", o.max_clients_per_ip,
                 "Most WebSocket clients from one address (then HTTP 503)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--allow-host", o.allow_host,
                 "Host name answered besides localhost, 127.0.0.1 and [::1] (repeatable; on a "
                 "non-loopback --listen: the only names answered) [default: any on non-loopback]")
      ->type_name("NAME")
      ->allow_extra_args(false);  // one NAME per --allow-host
  app.add_option("--max-clients", o.max_clients, "Most WebSocket clients at once (then HTTP 503)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--max-message", o.max_message, "Largest client message in bytes (then close 1009)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 30).description(""))
      ->type_name("BYTES")
      ->capture_default_str();
  app.add_option("--allow-origin", o.allow_origin,
                 "Origin allowed to connect (repeatable; '*' any) [default: same host]")
      ->type_name("ORIGIN")
      ->allow_extra_args(false);  // one ORIGIN per --allow-origin
  app.add_option("--token", o.token, "Require this token (Authorization: Bearer, subprotocol smws.bearer.TOKEN, or ?token=)")
      ->envname("WS_RELAY_TOKEN")
      ->type_name("TOKEN");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate: serve wss:// and https://")
      ->type_name("FILE");
  app.add_option("--tls-key", o.tls_key, "PEM private key for --tls-cert")->type_name("FILE");
  app.add_flag("--exit-on-eof", o.exit_on_eof,
               "Exit when stdin ends (after draining queues) instead of serving on");
  app.add_option("--drain-timeout", o.drain_timeout, "Seconds to drain queues with --exit-on-eof")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--hitl-timeout", o.hitl_timeout,
                 "Seconds an interrupt without its own timeout stays pending")
      ->check(kSeconds)
      ->capture_default_str();
  app.add_option("--audit", o.audit, "Append interrupts and decisions to FILE (NDJSON, fsynced)")
      ->type_name("FILE");
  // Who may decide (SPEC "Who may decide"; docs/hitl.md, "Who may decide").
  app.add_option("--users", o.users,
                 "People and their token hashes: NAME GROUP[,GROUP...] sha256:HEX per line (--new-token makes one)")
      ->envname("WS_RELAY_USERS")
      ->type_name("FILE");
  app.add_option("--jwt-key", o.jwt_keys, "PEM public key(s) verifying JWT bearer tokens: RS256, ES256 (repeatable)")
      ->type_name("FILE")
      ->allow_extra_args(false);
  app.add_option("--jwt-secret-file", o.jwt_secret_file, "File holding the HS256 secret verifying JWT bearer tokens")
      ->type_name("FILE");
  app.add_option("--jwt-audience", o.jwt_audience, "A JWT's aud must name this")->type_name("AUD");
  app.add_option("--jwt-name-claim", o.jwt_name_claim, "The JWT claim naming the person")
      ->type_name("CLAIM")
      ->capture_default_str();
  app.add_option("--jwt-groups-claim", o.jwt_groups_claim, "The JWT claim listing the person's groups")
      ->type_name("CLAIM")
      ->capture_default_str();
  app.add_option("--trusted-proxy", o.trusted_proxies,
                 "An SSO proxy's address range whose --user-header names the person (repeatable)")
      ->type_name("CIDR")
      ->allow_extra_args(false);
  app.add_option("--user-header", o.user_header, "Header a trusted proxy names the person in")
      ->type_name("H")
      ->capture_default_str();
  app.add_option("--groups-header", o.groups_header, "Header a trusted proxy lists the groups in (comma-separated)")
      ->type_name("H")
      ->capture_default_str();
  app.add_option("--approvers", o.approvers,
                 "Who may decide any interrupt: GROUP or @NAME (repeatable) [default: the group approvers]")
      ->type_name("WHO")
      ->allow_extra_args(false);
  app.add_option("--policy", o.policy, "Per-action approvers, quorum and self-approval (JSON lines; SIGHUP re-reads)")
      ->type_name("FILE");
  app.add_option("--reply-dir", o.reply_dir, "Send reply datagrams only to sockets inside DIR")
      ->type_name("DIR");
  app.add_option("--route", o.routes,
                 "Serve PATH as a WebSocket endpoint whose clients get FILTER by default "
                 "(repeatable; FILTER: type:GLOB[,GLOB...] and/or machine:GLOB[,...] joined by ';')")
      ->type_name("PATH=FILTER")
      ->allow_extra_args(false);  // one PATH=FILTER per --route
  app.add_option("--machine-history", o.machine_history,
                 "Events kept per machine, replayed to a client whose filter names it (0: none)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--machine-history-bytes", o.machine_history_bytes,
                 "Bound on all --machine-history events; least recently active machines go first")
      ->check(CLI::Range(size_t{1}, size_t{1} << 40).description(""))
      ->type_name("BYTES")
      ->capture_default_str();
  app.add_option("--redis", o.redis,
                 "Join the group of relays sharing one stream on this Redis "
                 "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]); implies --seq")
      ->envname("WS_RELAY_REDIS")
      ->type_name("URL");
  app.add_option("--redis-stream", o.redis_stream, "Name of the group's stream in Redis")
      ->type_name("NAME")
      ->capture_default_str();
  app.add_option("--redis-history", o.redis_history,
                 "Events Redis keeps (and each relay holds) for ?since=")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--redis-buffer", o.redis_buffer,
                 "Stdin events buffered while Redis is away (then the oldest are dropped)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 24).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--redis-sentinel", o.redis_sentinels,
                 "Find the group's Redis through this Sentinel and follow its failovers "
                 "(repeatable; needs --redis-master)")
      ->type_name("HOST:PORT")
      ->allow_extra_args(false);  // one HOST:PORT per --redis-sentinel
  app.add_option("--redis-master", o.redis_master, "The master's name in the Sentinels' configuration")
      ->type_name("NAME");
  app.add_option("--redis-replicas", o.redis_replicas,
                 "Replicas that must hold an event (WAIT) before it counts and is broadcast")
      ->check(CLI::Range(0, 100).description(""))
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--redis-wait-timeout", o.redis_wait_timeout,
                 "Seconds one WAIT of --redis-replicas may take before it is counted and asked again")
      ->check(kSeconds)
      ->capture_default_str();
  add_common_flags(app, o.common);
}

void setup_ws_relay_one_shot(CLI::App& app, RelayOneShot& one) {
  app.add_option("--new-token", one.new_token,
                 "Print a new random token on stdout and its users-file line on stderr, then exit "
                 "(GROUPS: a,b or -)")
      ->expected(2)
      ->type_name("NAME GROUPS");
  app.add_option("--verify-audit", one.verify_audit,
                 "Check an --audit file's hash chain, then exit: 0 intact, 1 a line changed, "
                 "removed or inserted")
      ->type_name("FILE");
}

int run_ws_relay_one_shot(const RelayOneShot& one) {
  if (!one.new_token.empty() && !one.verify_audit.empty()) {
    log::error("--new-token and --verify-audit are separate modes; give one");
    return kExitUsage;
  }
  if (one.new_token.size() == 2) {
    auth::NewToken t;
    if (Status st = auth::new_token(one.new_token[0], one.new_token[1], &t); !st.ok()) {
      log::error("--new-token: " + st.message);
      return exit_code_for(st);
    }
    std::printf("%s\n", t.token.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", t.line.c_str());
    return kExitOk;
  }
  if (!one.verify_audit.empty()) {
    auth::AuditVerdict v;
    if (Status st = auth::verify_audit(one.verify_audit, &v); !st.ok()) {
      log::error(st.message);
      return kExitNoInput;  // missing or unreadable: 66, as the man page says
    }
    std::printf("%s\n", v.text().c_str());
    return v.intact ? kExitOk : kExitNegative;
  }
  return -1;
}

int run_ws_relay(const RelayOptions& o) {
  // The loop thread must never block in write(2) on a stderr nobody reads:
  // from here every diagnostic goes through a bounded queue and a thread.
  log::AsyncStderr async_stderr;
  net::ServerOptions so;
  ListenAddress listen;
  if (Status st = parse_listen(o.listen, &listen); !st.ok()) {
    log::error("--listen '" + o.listen + "': " + st.message);
    return exit_code_for(st);
  }
  so.host = listen.host;
  so.port = listen.port;
  if (o.path.empty() || o.path[0] != '/') {
    log::error("--path '" + o.path + "': must start with '/'");
    return kExitUsage;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    log::error("--tls-cert and --tls-key go together");
    return kExitUsage;
  }
  std::vector<Route> routes;
  if (Status s = relay::parse_routes(o.routes, o.path, &routes); !s.ok()) {
    log::error(s.message);
    return exit_code_for(s);
  }
  for (const Route& r : routes) so.extra_paths.push_back(r.path);
  so.path = o.path;
  so.max_queue = o.max_queue;
  so.slow_client = o.slow_client == "drop" ? net::SlowClientPolicy::kDrop
                                           : net::SlowClientPolicy::kDisconnect;
  so.ping_interval = o.ping_interval;
  so.ping_timeout =
      o.ping_timeout >= 0 ? o.ping_timeout : protocol::kPingTimeoutFactor * o.ping_interval;
  so.drop_notice = protocol::dropped_message;
  if (o.app_ping) so.keepalive = [] { return protocol::app_ping_message(wall_seconds()); };
  so.max_message = o.max_message;
  so.max_clients = o.max_clients;
  so.max_clients_per_address = o.max_clients_per_ip;
  so.max_queue_bytes = o.max_queue_bytes;
  for (const std::string& h : o.allow_host) {
    // A name or address as a Host header carries it, without port or path.
    bool ok = !h.empty() && h.size() <= 255 &&
              h.find_first_of("/ \t,;@?#") == std::string::npos &&
              (h.find(':') == std::string::npos || h.front() == '[' ||
               h.find(':') != h.rfind(':'));  // "name:port" is not a name; IPv6 has several ':'
    if (!ok) {
      log::error("--allow-host '" + h + "': must be a host name or address without port "
                 "(e.g. relay.example.com, 10.0.0.5, [fd00::5])");
      return kExitUsage;
    }
  }
  so.allow_hosts = o.allow_host;
  // Descriptors: clients, handshakes and the relay's own must fit the
  // open-file limit (raised to the hard limit first); refusing to start
  // says so once, where running out under load would fail clients at random.
  {
    relay::FdLimit limit = relay::raise_fd_limit();
    if (limit.was < limit.soft) {
      log::note(1, "open-file limit raised from " + std::to_string(limit.was) + " to " +
                       std::to_string(limit.soft));
    }
    Status st = relay::check_fd_budget(limit, o.max_clients, protocol::kMaxHandshaking,
                                       protocol::kReservedFds);
    if (!st.ok()) {
      log::error(st.message);
      return exit_code_for(st);
    }
  }
  so.allow_origins = o.allow_origin;
  so.token = o.token;
  so.tls_cert = o.tls_cert;
  so.tls_key = o.tls_key;
  so.close_timeout = protocol::kSlowClientCloseGrace;
  redis::RedisUrl redis_url;
  const bool group = !o.redis.empty() || !o.redis_sentinels.empty();
  if (!o.redis.empty()) {
    Status st = redis::parse_url(o.redis, &redis_url);
    if (!st.ok()) {
      log::error(st.message);
      return exit_code_for(st);
    }
  }
  redis::StreamOptions checked;  // the Relay builds its own from o
  if (Status st = relay::group_stream_options(o, &checked); !st.ok()) {
    log::error(st.message);
    return exit_code_for(st);
  }
  if (group && o.redis_stream.empty()) {
    log::error("--redis-stream: must not be empty");
    return kExitUsage;
  }

  AuditLog audit;
  if (!o.audit.empty()) {
    std::string error;
    if (!audit.open(o.audit, error)) {
      log::error(error);
      return kExitCantCreate;
    }
  }

  relay::Identities identities;
  if (Status st = relay::load_identities(o, &identities); !st.ok()) {
    log::error(st.message);
    return exit_code_for(st);
  }
  const bool names_connections = identities.roles();
  relay::Relay relay(o, &audit, group ? &redis_url : nullptr);
  relay.set_routes(std::move(routes));
  relay.set_identities(std::move(identities));
  if (names_connections) {
    // The relay names every connection (the shared --token is one of its
    // sources then), never the client.
    so.token.clear();
    so.authenticate = [&relay](const net::HttpRequest& request) { return relay.authenticate(request); };
  }
  if (!o.trusted_proxies.empty()) {
    // Per-address limits behind a trusted proxy: its clients count by the
    // X-Forwarded-For entry it added; its own handshakes (every client's)
    // are not limited per address at accept.
    auth::TrustedProxies proxies;
    if (Status st = auth::TrustedProxies::parse(o.trusted_proxies, &proxies); st.ok()) {
      so.address_key = [proxies](const std::string& peer, const net::HttpRequest* request) -> std::string {
        if (!proxies.contains(peer)) return peer;
        if (!request) return std::string();
        const std::string* xff = request->header("x-forwarded-for");
        std::optional<std::string> client = xff ? auth::forwarded_client(*xff) : std::nullopt;
        return client ? *client : peer;
      };
    }
  }
  net::WsServer server(so, &relay);
  relay.attach(&server);
  if (Status st = server.open(); !st.ok()) {
    log::error(st.message);
    relay.finish();
    return exit_code_for(st);
  }
  // Always shown (unless -q): scripts and tests read the port from it.
  log::note(0, "listening on " + server.url());
  relay.start_group();
  // SIGHUP: identities and policies read again (a self-pipe the loop watches).
  static int hup_pipe[2] = {-1, -1};
  if (::pipe2(hup_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {
      char one = 1;
      [[maybe_unused]] ssize_t n = ::write(hup_pipe[1], &one, 1);
    };
    ::sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGHUP, &sa, nullptr);
    server.watch(hup_pipe[0], [&relay] {
      char buf[64];
      while (::read(hup_pipe[0], buf, sizeof buf) > 0) {
      }
      if (Status st = relay.reload(); !st.ok()) {
        log::error("SIGHUP: " + st.message + "; keeping the identities and policies in force");
      }
    });
  }

  int stop_fd = -1;
  std::thread reader;
  if (!server.watch(STDIN_FILENO, [&relay] { relay.read_stdin_on_loop(); })) {
    log::note(2, "stdin cannot be polled (a regular file?): reading it on its own thread");
    stop_fd = ::eventfd(0, EFD_CLOEXEC);
    reader = std::thread([&] { relay.read_stdin(stop_fd); });
  }
  server.run();
  if (reader.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd, &one, sizeof one);
    reader.join();
    ::close(stop_fd);
  }
  relay.finish();
  const net::ServerStats& s = server.stats();
  log::note(1, "served " + std::to_string(s.connections_total) + " clients, " +
                   std::to_string(s.messages_out) + " messages out");
  return kExitOk;
}

}  // namespace smws
