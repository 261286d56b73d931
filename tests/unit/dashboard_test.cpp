// SPDX-License-Identifier: Apache-2.0
// The dashboard's embedded assets (cmake/embed_assets.cmake -> smws/web_assets.h)
// and the HTTP replies that serve them (smws/net/dashboard.h).
#include <catch2/catch.hpp>


#include "smws/net/dashboard.h"
#include "smws/web_assets.h"

using namespace smws;

namespace {

net::HttpRequest get(const std::string& path, const std::string& host = "127.0.0.1:3002") {
  net::HttpRequest r;
  r.method = "GET";
  r.path = path;
  r.target = path;
  r.version = "HTTP/1.1";
  if (!host.empty()) r.headers["host"] = host;
  return r;
}

const std::string* header(const net::HttpReply& reply, const std::string& name) {
  for (const auto& [k, v] : reply.headers) {
    if (k == name) return &v;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("every embedded asset has its bytes, a content type and a quoted 16-digit ETag", "[dashboard]") {
  REQUIRE(web::asset_count() >= 4);
  for (size_t i = 0; i < web::asset_count(); ++i) {
    const web::Asset& asset = web::asset_at(i);
    INFO(asset.name);
    CHECK(!asset.bytes.empty());
    CHECK(!asset.content_type.empty());
    REQUIRE(asset.etag.size() == 18);
    CHECK(asset.etag.front() == '"');
    CHECK(asset.etag.back() == '"');
    CHECK(web::find_asset(asset.name) == &asset);
  }
  CHECK(web::find_asset("missing.js") == nullptr);
}

TEST_CASE("the page is served at / with its WebSocket path and the CSP, nosniff and no-referrer headers",
          "[dashboard]") {
  net::HttpReply reply = net::dashboard_page(get("/"), "/ws/<x>");
  CHECK(reply.status == 200);
  CHECK(reply.content_type == "text/html; charset=utf-8");
  CHECK(reply.body.find("content=\"/ws/&lt;x&gt;\"") != std::string::npos);
  CHECK(reply.body.find("@WS_PATH@") == std::string::npos);
  REQUIRE(header(reply, "Content-Security-Policy"));
  CHECK(*header(reply, "X-Content-Type-Options") == "nosniff");
  CHECK(*header(reply, "Referrer-Policy") == "no-referrer");
}

TEST_CASE("assets are found by their URL path, the page only at /", "[dashboard]") {
  auto js = net::dashboard_asset(get("/dashboard.js"));
  REQUIRE(js);
  CHECK(js->content_type == "text/javascript; charset=utf-8");
  REQUIRE(header(*js, "ETag"));
  CHECK(*header(*js, "ETag") == web::find_asset("dashboard.js")->etag);
  CHECK(net::dashboard_asset(get("/dashboard.css")));
  CHECK_FALSE(net::dashboard_asset(get("/index.html")));
  CHECK_FALSE(net::dashboard_asset(get("/")));
  CHECK_FALSE(net::dashboard_asset(get("/nope.js")));
  CHECK_FALSE(net::dashboard_asset(get("/dashboard.js/")));
}

TEST_CASE("the CSP names the page's ws and wss origins only for a plain Host header", "[dashboard]") {
  std::string csp = net::dashboard_csp("127.0.0.1:3002");
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(csp.find("script-src 'self'") != std::string::npos);
  CHECK(csp.find("connect-src 'self' ws://127.0.0.1:3002 wss://127.0.0.1:3002;") != std::string::npos);
  CHECK(csp.find("unsafe-inline") == std::string::npos);
  // A Host that could smuggle a directive in is left out.
  std::string evil = net::dashboard_csp("a.example; script-src *");
  CHECK(evil.find("a.example") == std::string::npos);
  CHECK(evil.find("connect-src 'self';") != std::string::npos);
  CHECK(net::dashboard_csp("").find("connect-src 'self';") != std::string::npos);
}
