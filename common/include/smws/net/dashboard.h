// SPDX-License-Identifier: Apache-2.0
// ws-relay's dashboard over HTTP (SPEC "ws-relay's dashboard — GET /").
//
// The page is three embedded files (smws/web_assets.h): index.html, served
// at "/" and guarded by the relay's token like /metrics (it is the way in to
// the data), and its stylesheet, script and icon, served at "/<name>" to
// anyone: they hold no data, and a browser fetches them without the token
// the page's URL carries. Every reply carries the headers that keep the page
// to itself: a Content-Security-Policy that allows nothing but the page's own
// assets and its WebSocket (no inline script or style, no other host),
// X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer.
//
// Pure functions of the request; called on the server's loop thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "smws/net/handshake.h"

namespace smws::net {

// The Content-Security-Policy sent with every dashboard reply. `host` is the
// request's Host header (may be empty): when it is a plain host[:port], the
// page's ws:// and wss:// origins on it are named in connect-src besides
// 'self' (browsers differ on whether 'self' covers ws: and wss:).
std::string dashboard_csp(std::string_view host);

// The page itself for GET "/": index.html with its WebSocket path filled in
// (the `--path` the relay serves, HTML-escaped). The caller checks the token.
HttpReply dashboard_page(const HttpRequest& request, std::string_view ws_path);

// A public asset ("/dashboard.js", "/dashboard.css", "/favicon.svg") with
// its ETag, or nullopt when request.path names none ("/index.html" is not
// one: the page is only served at "/").
std::optional<HttpReply> dashboard_asset(const HttpRequest& request);

}  // namespace smws::net
