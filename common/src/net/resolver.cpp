// SPDX-License-Identifier: Apache-2.0
#include "smws/net/resolver.h"

#include <cstdio>

#include "smws/host_address.h"

namespace smws::net {

Status resolve_host(const std::string& host, double timeout_s, std::string* address, const LookupFn& lookup) {
  if (is_numeric_host(host)) {
    *address = host;
    return Status::Ok();
  }
  AsyncLookup pending;
  Status started = pending.start(host, lookup);
  if (!started.ok()) return started;
  // On timeout the lookup thread is left to finish on its own.
  if (!pending.wait_for(timeout_s)) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%.3g s", timeout_s);
    return Status::Error(Status::kTimedOut, "DNS lookup of " + host + " did not answer within " + limit +
                                                " (--connect-timeout)");
  }
  return pending.result(address);
}

}  // namespace smws::net
