// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/authenticator.h"

#include <openssl/crypto.h>

#include <algorithm>

namespace smws::auth {
namespace {

constexpr std::size_t kMaxProxyText = 256;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

AuthResult refused(int status, std::string reason) {
  AuthResult r;
  r.http_status = status;
  r.reason = std::move(reason);
  return r;
}

AuthResult admitted(Identity identity, std::string client) {
  AuthResult r;
  r.admitted = true;
  r.identity = std::move(identity);
  r.client_address = std::move(client);
  return r;
}

}  // namespace

Authenticator::Authenticator(AuthConfig config) : config_(std::move(config)) {
  if (!config_.shared_token.empty()) shared_token_hash_ = sha256(config_.shared_token);
}

bool Authenticator::roles_enabled() const {
  return config_.users != nullptr || config_.jwt != nullptr || !config_.proxies.empty();
}

bool Authenticator::requires_credentials() const { return roles_enabled() || !config_.shared_token.empty(); }

AuthResult Authenticator::authenticate(const AuthRequest& request) const {
  if (!requires_credentials()) return admitted(Identity::anonymous(), request.peer);

  // 1. Identity headers: believed from a trusted proxy, refused from anyone else.
  if (!config_.proxies.empty()) {
    std::optional<std::string> user, groups;
    if (request.header) {
      user = request.header(config_.user_header);
      groups = request.header(config_.groups_header);
    }
    const bool trusted = config_.proxies.contains(request.peer);
    if (!trusted && (user || groups)) {
      const std::string which = user && groups ? config_.user_header + " and " + config_.groups_header
                                : user       ? config_.user_header
                                             : config_.groups_header;
      const auto peer = normalise_address(request.peer);
      return refused(403, which + " from " + (peer ? *peer : std::string("an unknown peer")) +
                              ", which is not a --trusted-proxy");
    }
    if (trusted && user && !trim(*user).empty()) {
      const std::string_view name = trim(*user);
      if (name.size() > kMaxProxyText || !printable(name)) {
        return refused(401, "trusted proxy sent a " + config_.user_header + " that is not a name");
      }
      Identity id{std::string(name), {}, std::string(kViaProxy), std::nullopt};
      if (groups) {
        std::string_view rest = *groups;
        while (!rest.empty()) {
          const std::size_t comma = rest.find(',');
          std::string_view g = trim(rest.substr(0, comma));
          rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
          if (g.empty()) continue;
          if (g.size() > kMaxProxyText || !printable(g)) {
            return refused(401, "trusted proxy sent a " + config_.groups_header + " entry that is not a group");
          }
          if (!id.in_group(g)) id.groups.emplace_back(g);
        }
      }
      std::string client = request.peer;
      if (request.header) {
        if (auto xff = request.header("X-Forwarded-For")) {
          if (auto c = forwarded_client(*xff)) client = *c;
        }
      }
      return admitted(std::move(id), std::move(client));
    }
  }

  const bool has_token = request.token && !request.token->empty();
  std::string reason = "no credentials (a token or a trusted proxy's headers)";
  if (has_token) {
    const std::string& token = *request.token;
    // 2. Users file.
    if (config_.users) {
      if (auto id = config_.users->lookup(token)) return admitted(std::move(*id), request.peer);
      reason = "the token is not one of --users";
    }
    // 3. JWT: only a token shaped like one is worth verifying; its reason
    // ("token expired") says more than the users file's.
    if (config_.jwt && looks_like_jwt(token)) {
      JwtResult r = config_.jwt->verify(token, request.now, config_.jwt_options);
      if (r.ok) return admitted(std::move(r.identity), request.peer);
      reason = "jwt: " + r.reason;
    } else if (config_.jwt && !config_.users) {
      reason = "jwt: malformed token: not three dot-separated base64url parts";
    }
    // 4. The shared token.
    if (!config_.shared_token.empty()) {
      const Sha256 presented = sha256(token);
      if (CRYPTO_memcmp(presented.data(), shared_token_hash_.data(), presented.size()) == 0) {
        return admitted(Identity::shared_token(), request.peer);
      }
      if (!config_.users && !config_.jwt) reason = "wrong token";
    }
  }
  return refused(401, reason);
}

}  // namespace smws::auth
