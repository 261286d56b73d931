// Upgrade admission: whether a request for the WebSocket path becomes a
// WebSocket client, and if not, the HTTP refusal that says why. Socket-free
// (unit-tested with parsed requests); the server applies it to each request
// head on its WebSocket path. The limit on connections still in their
// handshake is applied earlier, at accept (ws_server.cpp), since those have
// sent no request yet.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "smws/net/handshake.h"

namespace smws::net {

struct AdmissionRules {
  std::vector<std::string> allow_origins;  // empty: same host only (origin_allowed)
  std::string token;                       // empty: no token required
  size_t max_clients = 0;                  // open clients at most (503 at the limit)
};

struct Admission {
  enum class Verdict {
    kAccept,      // answer 101
    kNotUpgrade,  // a plain HTTP request on the WebSocket path: 426
    kRefuse,      // an upgrade refused (400/401/403/405/426/503): counted
  };
  Verdict verdict = Verdict::kAccept;
  HttpReply reply;  // what to send unless kAccept
};

// In order: a WebSocket upgrade at all (426 with "Upgrade: websocket"),
// RFC 6455's checks (check_upgrade), the Origin (403), the token (401 with
// "WWW-Authenticate: Bearer"), then room: open_clients below max_clients and
// not shutting down (503 with "Retry-After: 5").
Admission admit_upgrade(const HttpRequest& request, const AdmissionRules& rules,
                        size_t open_clients, bool shutting_down);

}  // namespace smws::net
