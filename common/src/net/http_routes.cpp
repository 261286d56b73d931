// SPDX-License-Identifier: Apache-2.0
#include "smws/net/http_routes.h"

namespace smws::net {

void HttpRoutes::add(std::string path, RouteHandler handler, RouteAccess access) {
  routes_[std::move(path)] = Route{std::move(handler), access};
}

HttpReply HttpRoutes::serve(const HttpRequest& request, const std::string& token,
                            const std::function<auth::AuthResult(const HttpRequest&)>& authenticate) const {
  if (request.method != "GET" && request.method != "HEAD") {
    HttpReply r = text_reply(405, "only GET and HEAD are served");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  auto it = routes_.find(request.path);
  if (it == routes_.end()) return text_reply(404, "not found: " + request.path);
  if (it->second.access == RouteAccess::kToken && authenticate) {
    auth::AuthResult who = authenticate(request);
    if (!who.admitted) {
      HttpReply r = text_reply(who.http_status ? who.http_status : 401,
                               who.http_status == 403 ? "forbidden: " + who.reason
                                                      : "a valid token is required");
      if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    return it->second.handler(request);
  }
  if (it->second.access == RouteAccess::kToken && !token_ok(request, token)) {
    HttpReply r = text_reply(401, "a valid token is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  return it->second.handler(request);
}

bool HttpRoutes::any_host(const std::string& path) const {
  auto it = routes_.find(path);
  return it != routes_.end() && it->second.access == RouteAccess::kAnyHost;
}

}  // namespace smws::net
