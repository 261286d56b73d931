// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/identity.h"

#include <algorithm>

namespace smws::auth {

bool Identity::verified() const { return via == kViaUsers || via == kViaJwt || via == kViaProxy; }

bool Identity::in_group(std::string_view group) const {
  return std::find(groups.begin(), groups.end(), group) != groups.end();
}

bool Identity::expired(double now_wall) const { return expires_at && now_wall >= *expires_at; }

std::optional<double> Identity::monotonic_deadline(double now_wall, double now_mono) const {
  if (!expires_at) return std::nullopt;
  return now_mono + (*expires_at - now_wall);
}

nlohmann::json Identity::to_json() const {
  return {{"name", name}, {"groups", groups}, {"via", via}};
}

nlohmann::json Identity::brief_json() const { return {{"name", name}, {"via", via}}; }

Identity Identity::anonymous() { return Identity{"anonymous", {}, std::string(kViaNone), std::nullopt}; }

Identity Identity::shared_token() { return Identity{"token", {}, std::string(kViaToken), std::nullopt}; }

bool operator==(const Identity& a, const Identity& b) {
  return a.name == b.name && a.groups == b.groups && a.via == b.via && a.expires_at == b.expires_at;
}

}  // namespace smws::auth
