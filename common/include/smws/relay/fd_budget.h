// SPDX-License-Identifier: Apache-2.0
// ws-relay's open-file budget: at start it raises its soft RLIMIT_NOFILE to
// the hard limit (run_ws_relay, once, before listening), then refuses to
// start (64) when --max-clients, the handshake allowance and a reserve do
// not fit: a relay that runs out of descriptors under load fails its
// clients at random (EMFILE on accept), one that refuses to start says so
// once, with the numbers and the fix.
#pragma once

#include <cstddef>
#include <cstdint>

#include "smws/status.h"

namespace smws::relay {

struct FdLimit {
  uint64_t soft = 0;  // RLIM_INFINITY shows as UINT64_MAX
  uint64_t hard = 0;
  uint64_t was = 0;   // the soft limit before raise_fd_limit
  int error = 0;      // errno of a failed raise (e.g. EPERM under a seccomp filter)
};

// Raises the soft limit to the hard one (nothing to do when they are
// equal, as under systemd's LimitNOFILE=65536) and returns the limits as
// they are then.
FdLimit raise_fd_limit();

// Descriptors needed: clients + handshakes + reserve.
// kUsage, naming the numbers and the fix, when they exceed limit.soft.
Status check_fd_budget(const FdLimit& limit, size_t max_clients, size_t handshakes, size_t reserve);

}  // namespace smws::relay
