// SPDX-License-Identifier: Apache-2.0
// Admission by identity (SPEC "Who may decide"): from what a request
// presented, which identity it gets, or why it is refused (401/403).
//
// Sources, asked in this order; the first that accepts admits:
//   1. trusted proxy  (--trusted-proxy): the peer is inside a trusted range
//      and sent a non-empty user header (--user-header, default
//      X-Forwarded-User); groups from --groups-header (default
//      X-Forwarded-Groups, comma-separated). via "proxy"; client_address is
//      the X-Forwarded-For entry the proxy added (cidr.h gives the rule).
//   2. users file     (--users): the token's SHA-256 is a line's. via "users".
//   3. JWT            (--jwt-key / --jwt-secret-file): the token is a JWT
//      one of the keys verifies. via "jwt", with expires_at.
//   4. shared token   (--token): the token equals it (compared as SHA-256
//      digests with CRYPTO_memcmp, so neither the length nor the bytes leak
//      through timing). {"name":"token","via":"token"}.
// Before any of them: with --trusted-proxy given, a request from a peer
// outside every trusted range that carries either identity header is refused
// 403 — never silently trusted, never silently ignored (a client that sends
// them expects them to count; an attacker sending them wants to know).
// Without --trusted-proxy the headers mean nothing and are not looked at.
//
// With no source configured at all, everyone is {"name":"anonymous",
// "via":"none"}. Otherwise a request no source accepts is refused 401, the
// reason saying why for the log (the most telling source's reason: a JWT's
// "token expired" rather than "not a users-file token"). Reasons never
// contain a token, a hash or a header's secret value; they may contain the
// peer's address and a header's name.
//
// roles_enabled(): users, JWT or a trusted proxy is configured. Then a
// person may decide only if a policy lets them (policy.h); without it
// (anonymous or shared token) everyone may decide, unverified.
//
// Threads: an Authenticator is immutable after construction; authenticate()
// is const and touches no shared state, so it is safe from any thread. In
// ws-relay it is called on the loop thread per upgrade/HTTP request; SIGHUP
// builds a new AuthConfig (users re-read, keys re-loaded) and replaces the
// Authenticator as a whole (the loaded parts are shared_ptr<const>, so a
// copy is cheap and the old one stays valid for whoever still holds it).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "smws/auth/cidr.h"
#include "smws/auth/identity.h"
#include "smws/auth/jwt.h"
#include "smws/auth/users_file.h"

namespace smws::auth {

constexpr std::string_view kDefaultUserHeader = "X-Forwarded-User";
constexpr std::string_view kDefaultGroupsHeader = "X-Forwarded-Groups";

struct AuthConfig {
  std::shared_ptr<const UsersFile> users;  // --users; null: not given
  std::shared_ptr<const JwtKeys> jwt;      // --jwt-key / --jwt-secret-file; null: not given
  JwtOptions jwt_options;
  TrustedProxies proxies;                  // --trusted-proxy
  std::string user_header{kDefaultUserHeader};
  std::string groups_header{kDefaultGroupsHeader};
  std::string shared_token;                // --token; empty: not given
};

// What a request presented. `token`: the Bearer value of Authorization, or
// ?token=, or one carried in a subprotocol — whichever the caller found
// (the caller decides precedence; one token per request). `header` looks a
// request header up by name, case-insensitively; nullopt when absent.
struct AuthRequest {
  std::optional<std::string> token;
  std::string peer;  // the TCP peer, "ip:port" as WsServer formats it
  std::function<std::optional<std::string>(std::string_view name)> header;
  double now = 0;    // wall-clock seconds since the epoch (JWT exp/nbf)
};

struct AuthResult {
  bool admitted = false;
  Identity identity;           // admitted
  std::string client_address;  // admitted: for records; the peer, or the proxy's X-Forwarded-For entry
  int http_status = 0;         // !admitted: 401 or 403
  std::string reason;          // !admitted: for the log line
};

class Authenticator {
 public:
  Authenticator() = default;  // no sources: everyone anonymous
  explicit Authenticator(AuthConfig config);

  AuthResult authenticate(const AuthRequest& request) const;

  bool roles_enabled() const;
  // Any credential option at all (roles, or --token): requests without one
  // are refused.
  bool requires_credentials() const;
  const AuthConfig& config() const { return config_; }

 private:
  AuthConfig config_;
  Sha256 shared_token_hash_{};
};

}  // namespace smws::auth
