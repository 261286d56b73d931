// SPDX-License-Identifier: Apache-2.0
// Builders for the JSON messages the relay side of the protocol sends on its
// own initiative (not events from stdin). Shapes: docs/protocol.md. The
// server library sends none of these by itself: the tool hands them to it
// (ServerOptions::drop_notice, ::keepalive), so WsServer knows WebSocket,
// not this protocol.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace smws::protocol {

// {"type":"dropped","count":N}: stands where N messages were dropped for a
// slow client under --slow-client drop.
std::string dropped_message(uint64_t count);

// {"type":"ping","timestamp":T} (--app-ping), T = wall-clock seconds since
// the epoch with millisecond precision.
std::string app_ping_message(double wall_seconds);

// {"type":"error","error":TEXT}: the reply to a client message we cannot use.
std::string error_message(std::string_view text);

}  // namespace smws::protocol
