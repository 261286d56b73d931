// SPDX-License-Identifier: Apache-2.0
// Who a connection is: the identity ws-relay establishes for every WebSocket
// and HTTP request (SPEC "Who may decide"), never what a client claims.
//
//   {"name":"alice","groups":["ops"],"via":"users"}
//
// `via` names the source that admitted the request:
//   "users"  --users FILE (a token whose SHA-256 is in the file)
//   "jwt"    --jwt-key / --jwt-secret-file (a verified JWT)
//   "proxy"  --trusted-proxy (a trusted SSO proxy's user/groups headers)
//   "token"  --token (the one shared secret; name "token")
//   "none"   no credential options at all (name "anonymous")
// The first three are verified: the relay knows the person. The last two are
// not: records then carry "verified":false and decided_by stays as claimed.
//
// Expiry: only a JWT carries one. `expires_at` is its `exp` in wall-clock
// seconds since the epoch (what the token says; the relay compares it with
// smws::wall_seconds()). The relay may turn it into a monotonic deadline
// with monotonic_deadline() once, at admission, so that a wall clock set
// backwards cannot keep an expired connection open. Other sources never
// expire (a SIGHUP that removes a user closes that user's connections).
//
// Threads: a plain value; copy it freely.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace smws::auth {

// The `via` values, spelled once.
inline constexpr std::string_view kViaUsers = "users";
inline constexpr std::string_view kViaJwt = "jwt";
inline constexpr std::string_view kViaProxy = "proxy";
inline constexpr std::string_view kViaToken = "token";
inline constexpr std::string_view kViaNone = "none";

struct Identity {
  std::string name;
  std::vector<std::string> groups;  // in the order the source gave them, no duplicates
  std::string via;                  // one of the kVia* values
  std::optional<double> expires_at; // JWT `exp`, wall seconds; nullopt = never

  // via is users, jwt or proxy.
  bool verified() const;
  bool in_group(std::string_view group) const;
  // expires_at is set and now_wall >= expires_at (RFC 7519: the token is
  // valid only *before* exp).
  bool expired(double now_wall) const;
  // A monotonic deadline for expires_at: now_mono + (expires_at - now_wall);
  // nullopt when the identity never expires.
  std::optional<double> monotonic_deadline(double now_wall, double now_mono) const;

  // {"name","groups","via"}: `you` in a client's `initial`, `from` on client
  // messages printed on stdout, `by` in a vote. Never carries expiry or any
  // credential.
  nlohmann::json to_json() const;
  // {"name","via"}: one entry of a relay-written decided_by.
  nlohmann::json brief_json() const;

  // {"name":"anonymous","groups":[],"via":"none"}: no credential options.
  static Identity anonymous();
  // {"name":"token","groups":[],"via":"token"}: --token matched.
  static Identity shared_token();
};

bool operator==(const Identity& a, const Identity& b);
inline bool operator!=(const Identity& a, const Identity& b) { return !(a == b); }

}  // namespace smws::auth
