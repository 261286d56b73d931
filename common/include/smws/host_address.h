// SPDX-License-Identifier: Apache-2.0
// A host name to a numeric address, for the tools that connect by address
// after resolving on a thread of their own (ws-probe's resolver with a
// deadline, ws-relay's Redis lookup thread): getaddrinfo(3) itself, once.
//
// Threads: any; lookup_host_address() blocks for as long as the system
// resolver takes, so never call it on an event loop.
#pragma once

#include <string>

namespace smws {

// getaddrinfo(3) for TCP, IPv4 preferred (POCO's SocketAddress order):
// *address is the first address as text ("192.0.2.1", "::1"). false:
// *error says why (the resolver's message, or "no IPv4 or IPv6 address").
bool lookup_host_address(const std::string& host, std::string* address, std::string* error);

// "127.0.0.1", "::1": an address already, no lookup needed.
bool is_numeric_host(const std::string& host);

}  // namespace smws
