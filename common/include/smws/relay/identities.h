// SPDX-License-Identifier: Apache-2.0
// The relay's identities and policies, loaded from its flags (and again on
// SIGHUP): the Authenticator that names every connection (smws::auth) and
// the Policy that says who may decide. Also how an HTTP request's
// credentials are read for it, and the identity of a client when no
// identity source is configured (`--token` alone, or nothing).
//
// Thread: load_identities reads files: at start, or on the loop thread on
// SIGHUP (small files, read once). The rest is pure.
#pragma once

#include <memory>
#include <string>

#include "smws/auth/authenticator.h"
#include "smws/auth/policy.h"
#include "smws/net/handshake.h"
#include "smws/relay/relay_options.h"
#include "smws/status.h"

namespace smws::relay {

struct Identities {
  std::shared_ptr<const auth::Authenticator> authenticator;
  auth::Policy policy;
  // --users, --jwt-* or --trusted-proxy: the relay names every connection
  // (ServerOptions::authenticate) and only policies' approvers decide.
  bool roles() const { return policy.roles_enabled(); }
};

// Errors name the flag and the file (kUsage, kNotFound, kIo, kBadInput).
Status load_identities(const RelayOptions& options, Identities* out);

// What the request presented, for Authenticator::authenticate: the Bearer
// token of Authorization, else ?token=.
auth::AuthRequest auth_request(const net::HttpRequest& request, double now_wall);

// A client's identity without an identity source: the shared token's when
// --token is set (every admitted client presented it), else anonymous.
auth::Identity unverified_identity(const RelayOptions& options);

}  // namespace smws::relay
