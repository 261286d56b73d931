// SPDX-License-Identifier: Apache-2.0
// The HOST:PORT a server listens on (ws-relay --listen). Pure parsing: no
// sockets, no name resolution (getaddrinfo happens when the server opens).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smws/status.h"

namespace smws {

struct ListenAddress {
  std::string host;  // without IPv6 brackets; "0.0.0.0" for ":PORT"
  uint16_t port = 0; // 0: the kernel picks a free port
};

// Accepts "HOST:PORT", "[V6]:PORT" and ":PORT" (all IPv4 interfaces). On
// anything else returns kUsage with "expected HOST:PORT, e.g. 127.0.0.1:3002"
// (the caller names the flag) and leaves *out alone.
Status parse_listen(std::string_view text, ListenAddress* out);

}  // namespace smws
