// SPDX-License-Identifier: Apache-2.0
#include "smws/net/dashboard.h"

#include "smws/web_assets.h"

namespace smws::net {
namespace {

// index.html names its WebSocket path with this placeholder (in a <meta>, so
// the page's script reads it without any inline script).
constexpr std::string_view kPathPlaceholder = "@WS_PATH@";

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// A Host header fit to be repeated inside the policy: a name, IPv4 or
// [IPv6] with an optional port, nothing that could end a directive.
bool plain_host(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  return true;
}

HttpReply with_page_headers(HttpReply reply, const HttpRequest& request) {
  const std::string* host = request.header("host");
  reply.headers.emplace_back("Content-Security-Policy", dashboard_csp(host ? *host : ""));
  reply.headers.emplace_back("X-Content-Type-Options", "nosniff");
  reply.headers.emplace_back("Referrer-Policy", "no-referrer");
  return reply;
}

}  // namespace

std::string dashboard_csp(std::string_view host) {
  std::string connect = "connect-src 'self'";
  if (plain_host(host)) {
    connect += " ws://";
    connect += host;
    connect += " wss://";
    connect += host;
  }
  return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " + connect +
         "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

HttpReply dashboard_page(const HttpRequest& request, std::string_view ws_path) {
  const web::Asset* page = web::find_asset("index.html");
  HttpReply reply;
  if (page == nullptr) return text_reply(500, "the dashboard page was not built in");
  reply.content_type = std::string(page->content_type);
  reply.body = std::string(page->bytes);
  size_t at = reply.body.find(kPathPlaceholder);
  if (at != std::string::npos) reply.body.replace(at, kPathPlaceholder.size(), html_escape(ws_path));
  return with_page_headers(std::move(reply), request);
}

std::optional<HttpReply> dashboard_asset(const HttpRequest& request) {
  if (request.path.size() < 2 || request.path[0] != '/') return std::nullopt;
  std::string_view name = std::string_view(request.path).substr(1);
  if (name == "index.html") return std::nullopt;
  const web::Asset* asset = web::find_asset(name);
  if (asset == nullptr) return std::nullopt;
  HttpReply reply;
  reply.content_type = std::string(asset->content_type);
  reply.body = std::string(asset->bytes);
  reply.headers.emplace_back("ETag", std::string(asset->etag));
  return with_page_headers(std::move(reply), request);
}

}  // namespace smws::net
