// SPDX-License-Identifier: Apache-2.0
// ws-probe's knowledge base (smws/probe_knowledge.h): which proxies, CDNs
// and platforms show themselves in which response headers, the setting of
// each that ends idle WebSockets, and the well-known idle-timeout defaults.
// Tables only; the rules that use them are in probe_verdict.cpp.
#include "smws/probe_knowledge.h"

#include <algorithm>
#include <cmath>

#include "smws/ascii.h"

namespace smws {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

bool is_in_between(const Intermediary& i) { return !starts_with(i.name, "origin server"); }

std::string idle_setting_of(const Intermediary& i) {
  // The setting that, by each product's documentation, ends an idle proxied
  // WebSocket; the default in parentheses.
  struct Setting {
    std::string_view name_part;
    std::string_view setting;
  };
  static const Setting kSettings[] = {
      {"nginx", "nginx's proxy_read_timeout (default 60 s; also proxy_send_timeout)"},
      {"Cloudflare", "Cloudflare's idle timeout (100 s, fixed): the drop is most likely behind it"},
      {"AWS Elastic Load Balancer", "the load balancer's idle_timeout.timeout_seconds (default 60 s)"},
      {"HAProxy", "HAProxy's timeout tunnel (or timeout client/server when no tunnel timeout is set)"},
      {"Envoy", "Envoy's stream_idle_timeout or the route's idle_timeout (default 5 min)"},
      {"Caddy", "Caddy's reverse_proxy stream_timeout / transport read_timeout"},
      {"Apache", "Apache's ProxyWebsocketIdleTimeout (or ProxyTimeout/Timeout, default 60 s)"},
      {"Traefik", "Traefik's entry point respondingTimeouts.idleTimeout / readTimeout"},
      {"Varnish", "Varnish's pipe_timeout"},
      {"Kong", "the Kong service's read_timeout (default 60 s)"},
      {"Heroku", "the Heroku router's idle timeout (55 s, fixed)"},
      {"Google", "the backend service timeoutSec (default 30 s)"},
      {"Azure", "Azure Front Door's idle timeout"},
      {"Squid", "Squid's read_timeout / client_lifetime"},
  };
  for (const auto& s : kSettings) {
    if (i.name.find(s.name_part) != std::string::npos) return std::string(s.setting);
  }
  return "";
}

const std::vector<KnownIdleDefault>& known_idle_defaults() {
  // Sorted by seconds. Sources: each product's documentation of its default.
  static const std::vector<KnownIdleDefault> kDefaults = {
      {"Google Cloud load balancer backend service timeout", 30, "raise the backend service timeoutSec"},
      {"HAProxy sample configuration timeout client/server", 50, "set 'timeout tunnel 1h' for WebSocket backends"},
      {"Heroku router idle timeout", 55, "send a message or ping at least every 50 s (not configurable)"},
      {"nginx proxy_read_timeout (also ingress-nginx)", 60, "proxy_read_timeout 3600s; or ping more often than every 60 s"},
      {"AWS ALB/Classic ELB idle timeout", 60, "raise the load balancer's idle_timeout.timeout_seconds attribute"},
      {"Apache httpd Timeout (mod_proxy_wstunnel)", 60, "ProxyTimeout / ProxyWebsocketIdleTimeout"},
      {"Cloudflare proxied WebSocket idle timeout", 100, "send a message or ping at least every 90 s (not configurable on most plans)"},
      {"Azure Load Balancer idle timeout (4 min)", 240, "raise idleTimeoutInMinutes or ping more often"},
      {"Envoy/Istio stream_idle_timeout (5 min)", 300, "raise stream_idle_timeout or ping more often"},
      {"AWS NLB TCP idle timeout", 350, "raise tcp.idle_timeout.seconds or ping more often than every 350 s"},
      {"AWS API Gateway WebSocket idle timeout (10 min)", 600, "send a message at least every 9 min (not configurable)"},
  };
  return kDefaults;
}

std::vector<KnownIdleDefault> match_idle_default(double silence_s) {
  std::vector<KnownIdleDefault> out;
  for (const auto& d : known_idle_defaults()) {
    double tolerance = std::max(1.0, 0.05 * d.seconds);
    if (std::fabs(silence_s - d.seconds) <= tolerance) out.push_back(d);
  }
  return out;
}

std::string describe_idle_matches(const std::vector<KnownIdleDefault>& matches) {
  std::string out;
  for (size_t i = 0; i < matches.size(); ++i) {
    if (i > 0) out += i + 1 == matches.size() ? " or " : ", ";
    out += std::string(matches[i].name) + " (" + std::to_string(static_cast<int>(matches[i].seconds)) + " s)";
  }
  return out;
}

std::vector<Intermediary> fingerprint(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<Intermediary> out;
  auto add = [&out](std::string name, std::string evidence) {
    for (const auto& i : out) {
      if (i.name == name) return;
    }
    out.push_back({std::move(name), std::move(evidence)});
  };
  for (const auto& [raw_name, value] : headers) {
    std::string name = ascii_lower(raw_name);
    std::string v = ascii_lower(value);
    std::string evidence = raw_name + ": " + value;
    if (evidence.size() > 80) evidence = evidence.substr(0, 77) + "...";
    if (name == "server") {
      if (contains(v, "cloudflare")) add("Cloudflare", evidence);
      else if (contains(v, "awselb")) add("AWS Elastic Load Balancer", evidence);
      else if (contains(v, "openresty")) add("OpenResty (nginx)", evidence);
      else if (contains(v, "nginx")) add("nginx", evidence);
      else if (contains(v, "istio-envoy")) add("Istio (Envoy)", evidence);
      else if (contains(v, "envoy")) add("Envoy", evidence);
      else if (contains(v, "caddy")) add("Caddy", evidence);
      else if (contains(v, "apache")) add("Apache httpd", evidence);
      else if (contains(v, "microsoft-iis")) add("Microsoft IIS", evidence);
      else if (contains(v, "akamai")) add("Akamai", evidence);
      else if (contains(v, "haproxy")) add("HAProxy", evidence);
      else if (contains(v, "traefik")) add("Traefik", evidence);
      else if (contains(v, "fly/")) add("Fly.io proxy", evidence);
      else if (contains(v, "vercel")) add("Vercel", evidence);
      else if (contains(v, "google frontend") || contains(v, "gfe")) add("Google Front End", evidence);
      else add("origin server " + value, evidence);  // the application server itself
    } else if (name == "via") {
      if (contains(v, "cloudfront")) add("Amazon CloudFront", evidence);
      else if (contains(v, "vegur")) add("Heroku router", evidence);
      else if (contains(v, "google")) add("Google Cloud load balancer", evidence);
      else if (contains(v, "varnish")) add("Varnish", evidence);
      else if (contains(v, "kong")) add("Kong", evidence);
      else if (contains(v, "squid")) add("Squid", evidence);
      else add("a proxy (Via)", evidence);
    } else if (name == "cf-ray" || name == "cf-cache-status") {
      add("Cloudflare", evidence);
    } else if (name == "x-amz-cf-id" || name == "x-amz-cf-pop") {
      add("Amazon CloudFront", evidence);
    } else if (name == "x-amzn-requestid" || name == "x-amz-apigw-id") {
      add("AWS API Gateway", evidence);
    } else if (name.rfind("x-amz", 0) == 0) {
      add("AWS", evidence);
    } else if (name == "x-served-by" || name == "x-fastly-request-id" || name == "fastly-debug-digest") {
      add(contains(v, "cache-") || name != "x-served-by" ? "Fastly" : "a CDN (X-Served-By)", evidence);
    } else if (name == "x-azure-ref" || name == "x-msedge-ref") {
      add("Azure Front Door", evidence);
    } else if (name.rfind("x-envoy-", 0) == 0) {
      add("Envoy", evidence);
    } else if (name.rfind("x-kong-", 0) == 0) {
      add("Kong", evidence);
    } else if (name == "x-varnish") {
      add("Varnish", evidence);
    } else if (name.rfind("x-akamai", 0) == 0) {
      add("Akamai", evidence);
    } else if (name == "x-vercel-id") {
      add("Vercel", evidence);
    } else if (name == "fly-request-id") {
      add("Fly.io proxy", evidence);
    } else if (name == "x-render-origin-server") {
      add("Render", evidence);
    } else if (name == "x-cache") {
      add("a caching proxy (X-Cache)", evidence);
    }
  }
  return out;
}

}  // namespace smws
