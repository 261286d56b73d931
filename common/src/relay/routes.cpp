// SPDX-License-Identifier: Apache-2.0
#include "smws/relay/routes.h"

namespace smws::relay {

Status parse_routes(const std::vector<std::string>& specs, const std::string& ws_path,
                    std::vector<Route>* out) {
  for (const std::string& spec : specs) {
    Route r;
    if (Status s = parse_route(spec, &r); !s.ok()) return s;
    if (r.path == ws_path || r.path == "/" || r.path == "/healthz" || r.path == "/metrics") {
      return Status::Error(Status::kUsage,
                           "--route '" + spec + "': " + r.path + " is already served by ws-relay");
    }
    for (const Route& earlier : *out) {
      if (earlier.path == r.path) {
        return Status::Error(Status::kUsage, "--route '" + spec + "': " + r.path + " is routed twice");
      }
    }
    out->push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace smws::relay
