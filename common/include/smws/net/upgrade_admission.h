// SPDX-License-Identifier: Apache-2.0
// Upgrade admission: whether a request for the WebSocket path becomes a
// WebSocket client, and if not, the HTTP refusal that says why. Socket-free
// (unit-tested with parsed requests); the server applies it to each request
// head on its WebSocket path. The limits on connections still in their
// handshake (in all, and per address) are applied earlier, at accept
// (ws_server.cpp), since those have sent no request yet; the Host rule
// (host_refusal) applies to every request, plain HTTP too.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "smws/net/handshake.h"

namespace smws::net {

struct AdmissionRules {
  std::vector<std::string> allow_origins;  // empty: same host only (origin_allowed)
  std::string token;                       // empty: no token required
  size_t max_clients = 0;                  // open clients at most (503 at the limit)
  // Open clients from one address (its AddressKey) at most (503 at the
  // limit); 0: no limit.
  size_t max_clients_per_address = 0;
};

// Why an upgrade was refused: one per check of admit_upgrade, in its order.
// The names (refusal_reason_name) are /metrics label values.
enum class RefusalReason : uint8_t {
  kBadUpgrade,    // not a valid RFC 6455 upgrade (method, version, headers)
  kOrigin,        // its Origin is not allowed
  kToken,         // no token, or a wrong one
  kMaxClients,    // max_clients are open
  kShuttingDown,  // the server is closing
  // Not admit_upgrade's: the server's, for plain HTTP sent to its TLS port
  // (answered 400 before any request is read).
  kNotTls,
  kMaxClientsPerAddress,  // max_clients_per_address are open from its address
  // The server's, for any request (plain HTTP too): its Host is not one
  // this server answers (host_refusal, 421).
  kHost,
  // The server's, at accept: its address already has that many connections
  // in their handshake (503 before any request is read).
  kHandshakesPerAddress,
};
constexpr size_t kRefusalReasons = 9;
const char* refusal_reason_name(RefusalReason reason);

struct Admission {
  enum class Verdict {
    kAccept,      // answer 101
    kNotUpgrade,  // a plain HTTP request on the WebSocket path: 426
    kRefuse,      // an upgrade refused (400/401/403/405/426/503): counted
  };
  Verdict verdict = Verdict::kAccept;
  HttpReply reply;  // what to send unless kAccept
  RefusalReason reason = RefusalReason::kBadUpgrade;  // kRefuse: why
  bool token_sent = false;  // kToken: a token was sent (and it was wrong)
};

// In order: a WebSocket upgrade at all (426 with "Upgrade: websocket"),
// RFC 6455's checks (check_upgrade), the Origin (403), the token (401 with
// "WWW-Authenticate: Bearer"), then room: open_clients below max_clients and
// not shutting down, then fewer than max_clients_per_address open from the
// request's address (`open_from_address`; 503 with "Retry-After: 5").
Admission admit_upgrade(const HttpRequest& request, const AdmissionRules& rules,
                        size_t open_clients, bool shutting_down, size_t open_from_address = 0);

// The 421 for a request whose Host the rule does not accept (any path but
// those exempt, see RouteAccess::kAnyHost), or nullopt.
std::optional<HttpReply> host_refusal(const HttpRequest& request, const HostRule& rule);

// The 503 answered at accept to a connection from an address that has
// too many connections in their handshake already.
HttpReply handshakes_per_address_refusal();

// A summary line that is due: `refused` refusals not logged, from
// `address`, or (address empty) from `addresses` addresses the log forgot
// to stay within its bound.
struct RefusalSummary {
  std::string address;
  uint64_t refused = 0;
  uint64_t addresses = 1;
};

// Which refusals to log, so that each one is visible by default without a
// client retrying in a loop (a dashboard reconnecting every second, a
// scanner) flooding stderr: per remote address, the first refusal is logged,
// then at most one line per `interval` seconds, which says how many were
// refused since the last line. Socket-free, time passed in; one thread.
class RefusalLog {
 public:
  // interval: seconds between two lines for one address. max_addresses:
  // addresses remembered; past it, those quiet for an interval are
  // forgotten, and if none is, the table is cleared (a flood from many
  // addresses then logs at most one line per address per interval anyway,
  // and memory stays bounded). The refusals not logged from the addresses
  // forgotten are not lost: they are summed up in one summary.
  explicit RefusalLog(double interval = 10.0, size_t max_addresses = 4096)
      : interval_(interval), max_addresses_(max_addresses) {}

  // A refusal from `address` (an IP, without port) at `now`. True when it
  // is to be logged; *since is then how many refusals from that address
  // were not logged before it.
  bool should_log(const std::string& address, double now, uint64_t* since);

  // The addresses whose interval has passed with refusals not logged, and
  // how many each (their summary line is due: without it a burst that
  // stopped would never be told). Their interval starts again at `now`.
  // Then, at most once per interval (the first forgetting starts it), one
  // summary with an empty address for the addresses forgotten meanwhile.
  std::vector<RefusalSummary> take_due(double now);

 private:
  struct Entry {
    double logged_at = 0;
    uint64_t suppressed = 0;
  };
  double interval_;
  size_t max_addresses_;
  // Folds a forgotten entry's refusals not logged into forgotten_.
  void forget(const Entry& e, double now);
  std::unordered_map<std::string, Entry> by_address_;
  RefusalSummary forgotten_;    // refused 0: nothing forgotten untold
  double forgotten_since_ = 0;  // when forgotten_ took its first count
};

// "127.0.0.1:5000" -> "127.0.0.1", "[::1]:5000" -> "::1".
std::string address_of_peer(std::string_view peer);

}  // namespace smws::net
