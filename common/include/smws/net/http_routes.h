// SPDX-License-Identifier: Apache-2.0
// HttpRoutes: the plain-HTTP side of the server, a table the tool fills
// (path -> handler returning a reply), so pages, /healthz and /metrics plug
// in without the server knowing them. Handlers run on the loop thread and
// must not block; they see the parsed request (query, headers, peer).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>

#include "smws/auth/authenticator.h"
#include "smws/net/handshake.h"

namespace smws::net {

using RouteHandler = std::function<HttpReply(const HttpRequest& request)>;

enum class RouteAccess {
  kPublic,  // served to anyone (health checks must work without the token)
  kToken,   // needs the server's token, when one is set (401 otherwise)
  // Public, and served whatever the request's Host (the server's Host rule,
  // HostRule, does not apply): for health checks, whose load balancer or
  // orchestrator sends any Host, and which tell nothing a rebinding page
  // could use.
  kAnyHost,
};

class HttpRoutes {
 public:
  // A later add() for the same path replaces the earlier one.
  void add(std::string path, RouteHandler handler, RouteAccess access = RouteAccess::kPublic);

  // In order: GET and HEAD only (405 with "Allow: GET, HEAD"), a known path
  // (404 naming it), the token for kToken routes (401 with
  // "WWW-Authenticate: Bearer"; token_ok's rules), then the handler's reply.
  // The server drops the body for HEAD.
  // authenticate: when set, a kToken route asks it instead of checking
  // token (ServerOptions::authenticate).
  HttpReply serve(const HttpRequest& request, const std::string& token,
                  const std::function<auth::AuthResult(const HttpRequest&)>& authenticate = {}) const;

  // True when `path` is a kAnyHost route.
  bool any_host(const std::string& path) const;

 private:
  struct Route {
    RouteHandler handler;
    RouteAccess access = RouteAccess::kPublic;
  };
  std::unordered_map<std::string, Route> routes_;
};

}  // namespace smws::net
