// SPDX-License-Identifier: Apache-2.0
#include "smws/relay/refusal_advice.h"

namespace smws::relay {

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) {
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (text.size() > 200) out += "...";
  return out;
}

std::string refusal_line(const net::RefusedUpgrade& r, const RelayOptions& options, uint64_t since) {
  const char* what = r.reason == net::RefusalReason::kHost ? "refused a request from "
                     : r.request                                ? "refused a WebSocket from "
                                                                : "refused a connection from ";
  std::string line = what + r.peer + ": " + std::to_string(r.status) + " ";
  switch (r.reason) {
    case net::RefusalReason::kOrigin: {
      const std::string* sent = r.request ? r.request->header("origin") : nullptr;
      std::string origin = printable(sent ? *sent : std::string());
      line += "origin " + origin + " is not allowed; to allow it: --allow-origin " + origin;
      // With no --allow-origin the same-host default is in force, and a list
      // replaces it: the advice must keep this relay's own page (/) allowed.
      if (options.allow_origin.empty()) {
        const std::string* host = r.request ? r.request->header("host") : nullptr;
        if (host && !host->empty()) {
          line += std::string(" --allow-origin ") + (options.tls_cert.empty() ? "http://" : "https://") +
                  printable(*host) + " (a list replaces the same-host default; the second keeps this relay's page)";
        } else {
          line += " and --allow-origin for this relay's own page (a list replaces the same-host default)";
        }
      }
      break;
    }
    case net::RefusalReason::kToken:
      if (!options.users.empty() || !options.jwt_keys.empty() || !options.jwt_secret_file.empty() ||
          !options.trusted_proxies.empty()) {
        // Identities (--users, --jwt-*, --trusted-proxy): the authenticator's reason.
        line += r.message;
        break;
      }
      line += r.token_sent ? "wrong token" : "no token";
      line += "; the client must send the relay's --token (Authorization: Bearer, the subprotocol "
              "smws.bearer.TOKEN or ?token=)";
      break;
    case net::RefusalReason::kMaxClients:
      line += std::to_string(options.max_clients) +
              " clients are connected; to allow more: --max-clients N";
      break;
    case net::RefusalReason::kShuttingDown:
      line += "the relay is shutting down";
      break;
    case net::RefusalReason::kBadUpgrade:
      line += "not a valid WebSocket upgrade: " + printable(r.message);
      break;
    case net::RefusalReason::kMaxClientsPerAddress:
      line += std::to_string(options.max_clients_per_ip) +
              " clients are connected from this address; to allow more: --max-clients-per-ip N";
      break;
    case net::RefusalReason::kHandshakesPerAddress:
      line += "too many connections from this address are in their handshake (" +
              std::to_string(protocol::kMaxHandshakingPerIp) +
              " at most; idle connects, or a reconnect storm behind one NAT)";
      break;
    case net::RefusalReason::kHost: {
      std::string name = printable(r.request ? net::host_name(*r.request) : std::string());
      line += "Host '" + name + "' is not a name of this relay (a page of another site re-bound to " +
              "this address? DNS rebinding); to serve it: --allow-host " + name;
      break;
    }
    case net::RefusalReason::kNotTls:
      line += "plain HTTP on the TLS port (--tls-cert); the client must use https:// or wss://";
      break;
  }
  if (since > 0) line += " (" + std::to_string(since) + " more refused from this address since)";
  return line;
}

}  // namespace smws::relay
