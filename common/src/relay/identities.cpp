// SPDX-License-Identifier: Apache-2.0
// Identities and policies from the relay's flags (identities.h).
#include "smws/relay/identities.h"

#include "smws/ascii.h"

namespace smws::relay {

Status load_identities(const RelayOptions& o, Identities* out) {
  auth::AuthConfig config;
  if (!o.users.empty()) {
    auto users = std::make_shared<auth::UsersFile>();
    if (Status s = auth::UsersFile::load(o.users, users.get()); !s.ok()) {
      return Status::Error(s.code, "--users: " + s.message);
    }
    config.users = users;
  }
  if (!o.jwt_keys.empty() || !o.jwt_secret_file.empty()) {
    auto keys = std::make_shared<auth::JwtKeys>();
    for (const std::string& path : o.jwt_keys) {
      if (Status s = keys->load_public_keys(path); !s.ok()) {
        return Status::Error(s.code, "--jwt-key: " + s.message);
      }
    }
    if (!o.jwt_secret_file.empty()) {
      if (Status s = keys->load_secret_file(o.jwt_secret_file); !s.ok()) {
        return Status::Error(s.code, "--jwt-secret-file: " + s.message);
      }
    }
    config.jwt = keys;
  }
  config.jwt_options.audience = o.jwt_audience;
  config.jwt_options.name_claim = o.jwt_name_claim;
  config.jwt_options.groups_claim = o.jwt_groups_claim;
  if (Status s = auth::TrustedProxies::parse(o.trusted_proxies, &config.proxies); !s.ok()) return s;
  config.user_header = o.user_header;
  config.groups_header = o.groups_header;
  config.shared_token = o.token;
  auto authenticator = std::make_shared<auth::Authenticator>(std::move(config));

  auth::Policy policy;
  if (Status s = policy.set_approvers(o.approvers); !s.ok()) return s;
  if (!o.policy.empty()) {
    std::vector<auth::PolicyRule> rules;
    if (Status s = auth::Policy::load_rules(o.policy, &rules); !s.ok()) {
      return Status::Error(s.code, "--policy: " + s.message);
    }
    policy.set_rules(std::move(rules));
  }
  policy.set_roles_enabled(authenticator->roles_enabled());
  out->authenticator = std::move(authenticator);
  out->policy = std::move(policy);
  return Status::Ok();
}

auth::AuthRequest auth_request(const net::HttpRequest& request, double now_wall) {
  auth::AuthRequest r;
  // Authorization: Bearer, then the subprotocol smws.bearer.T (a
  // browser's WebSocket), then ?token= (net/handshake.h).
  r.token = net::request_token(request);
  r.peer = request.peer;
  r.header = [&request](std::string_view name) -> std::optional<std::string> {
    const std::string* v = request.header(ascii_lower(name));
    if (!v) return std::nullopt;
    return *v;
  };
  r.now = now_wall;
  return r;
}

auth::Identity unverified_identity(const RelayOptions& options) {
  return options.token.empty() ? auth::Identity::anonymous() : auth::Identity::shared_token();
}

}  // namespace smws::relay
