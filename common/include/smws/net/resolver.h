// SPDX-License-Identifier: Apache-2.0
// Name resolution with a deadline. getaddrinfo() has no timeout of its own
// and POCO's resolver none either: a DNS server that never answers would
// hang the caller for the resolver's own retries (30 s and more with the
// default resolv.conf). resolve_host() runs the lookup on a short-lived
// thread and waits for it at most timeout_s; on timeout the thread is left to
// finish on its own (it owns a reference to the shared result and touches
// nothing else), so the caller never waits longer than its deadline.
//
// Threads: resolve_host() may be called from any thread; each call starts at
// most one lookup thread (none for a numeric address). The lookup thread is
// smws::AsyncLookup (async_lookup.h), shared with ws-relay's Redis link.
#pragma once

#include <functional>
#include <string>

#include "smws/async_lookup.h"
#include "smws/status.h"

namespace smws::net {

// The lookup seam and the system's lookup (async_lookup.h).
using ::smws::LookupFn;
using ::smws::system_lookup;

// *address: host itself when it is numeric, else the lookup's answer.
// kUnavailable when the name does not resolve, kTimedOut when the lookup has
// not answered within timeout_s; messages name the host and the limit.
Status resolve_host(const std::string& host, double timeout_s, std::string* address,
                    const LookupFn& lookup = system_lookup);

}  // namespace smws::net
