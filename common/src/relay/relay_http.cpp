// SPDX-License-Identifier: Apache-2.0
// The relay's HTTP routes (relay_http.h).
#include "smws/relay/relay_http.h"

#include <string>
#include <string_view>

#include "smws/net/dashboard.h"
#include "smws/prometheus.h"
#include "smws/web_assets.h"

namespace smws::relay {

void register_relay_routes(net::WsServer* server, const RelayOptions& options,
                           std::function<RelayCounters()> counters) {
  server->route("/healthz", [server, counters](const net::HttpRequest&) {
    const RelayCounters c = counters();
    net::HttpReply r = net::text_reply(healthz_status(c), healthz_text(server->stats(), c));
    r.content_type = "application/json";
    return r;
  }, net::RouteAccess::kAnyHost);  // a load balancer probes it with any Host; it tells only counts
  server->route(
      "/metrics",
      [server, counters](const net::HttpRequest&) {
        net::HttpReply r;
        r.content_type = PrometheusText::kContentType;
        r.body = metrics_text(server->stats(), counters());
        return r;
      },
      net::RouteAccess::kToken);
  const std::string path = options.path;
  server->route(
      "/", [path](const net::HttpRequest& request) { return net::dashboard_page(request, path); },
      net::RouteAccess::kToken);
  for (size_t i = 0; i < web::asset_count(); ++i) {
    std::string_view name = web::asset_at(i).name;
    if (name == "index.html") continue;  // only served at "/"
    server->route("/" + std::string(name), [](const net::HttpRequest& request) {
      return *net::dashboard_asset(request);
    });
  }
}

}  // namespace smws::relay
