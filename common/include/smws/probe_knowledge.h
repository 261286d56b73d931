// SPDX-License-Identifier: Apache-2.0
// ws-probe's knowledge base of what stands between a client and a WebSocket
// application: which proxy, CDN or platform each response header names
// (fingerprint), the setting of each that ends an idle proxied WebSocket
// (idle_setting_of), and the well-known idle-timeout defaults a measured
// silence is matched against. Tables and lookups only, pure; the verdict's
// rules (smws/probe_verdict.h) use them. Sources: each product's
// documentation of its defaults; docs/troubleshooting-1006.md lists them too.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smws {

// Something standing between the probe and the application, named from the
// response headers.
struct Intermediary {
  std::string name;      // "Cloudflare", "nginx", "AWS Application Load Balancer"
  std::string evidence;  // "cf-ray: 8a1b…", "Server: nginx/1.24.0"
};
// The application server itself (an unknown Server header) is named too, as
// "origin server …": it does not stand in between.
bool is_in_between(const Intermediary& i);
// The setting of an intermediary that most likely drops idle connections, in
// words ("nginx's proxy_read_timeout (default 60 s)"), or "" when unknown.
std::string idle_setting_of(const Intermediary& i);

// A well-known idle timeout of a proxy, load balancer or platform.
struct KnownIdleDefault {
  std::string_view name;     // "nginx proxy_read_timeout"
  double seconds;
  std::string_view fix;      // the setting to change
};
const std::vector<KnownIdleDefault>& known_idle_defaults();
// Defaults within tolerance of a measured silence: |silence - d| <= max(1 s, 5% of d).
// A proxy's timer starts at its own last activity, a little before the probe
// saw the last frame, hence the symmetric tolerance.
std::vector<KnownIdleDefault> match_idle_default(double silence_s);
// "nginx proxy_read_timeout (60 s) or AWS ALB idle timeout (60 s)", or "".
std::string describe_idle_matches(const std::vector<KnownIdleDefault>& matches);

// headers: as received (names in any case). Each product is named once.
std::vector<Intermediary> fingerprint(const std::vector<std::pair<std::string, std::string>>& headers);

}  // namespace smws
