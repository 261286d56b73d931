// SPDX-License-Identifier: Apache-2.0
// Protocol constants shared by the tools: defaults and limits of the wire
// formats. Their meaning, and the message shapes, are in docs/protocol.md;
// the user-facing contract is the SPEC. Every limit says why it is what it is.
#pragma once

#include <cstddef>

namespace smws::protocol {

// SM_SOCKET overrides it; --socket overrides both.
inline constexpr const char* kDefaultSocketPath = "/tmp/statemachine-events.sock";
inline constexpr const char* kSocketEnv = "SM_SOCKET";

// One event per datagram. 64 KiB is what a Unix datagram carries without
// raising net.core.wmem_default, and far above any state-change event.
inline constexpr size_t kDefaultMaxEventSize = 64 * 1024;

// ws-relay: loopback by default; exposing it is an explicit --listen.
inline constexpr const char* kDefaultListen = "127.0.0.1:3002";
inline constexpr const char* kDefaultHost = "127.0.0.1";
inline constexpr unsigned kDefaultPort = 3002;
inline constexpr const char* kDefaultWsPath = "/ws/events";

// Largest message a client may send (close 1009 above): client messages are
// small JSON (decisions, refresh, pong); 1 MiB leaves room and bounds memory.
inline constexpr size_t kDefaultMaxMessage = 1 << 20;

// Open WebSocket clients at once (HTTP 503 above). Each holds a descriptor;
// the descriptor limit here is 20,000.
inline constexpr size_t kDefaultMaxClients = 10000;

// Per-client queue: 1024 messages absorb a burst of a few hundred ms at
// 10k events/s before a client is judged slow.
inline constexpr size_t kDefaultMaxQueue = 1024;

// ... and 8 MiB of them (--max-queue-bytes), counting snapshot, history,
// refresh and subscribe replies: 1,024 events of ~1 KiB fit with room, a
// snapshot of 10,000 machines (~2-3 MB) fits, and a client asking for
// snapshots it never reads is closed as slow after a few, not after 1,024
// of them (hundreds of MB with a large table).
inline constexpr size_t kDefaultMaxQueueBytes = size_t{8} << 20;

// Open WebSocket clients from one address (--max-clients-per-ip): more
// than a busy NAT's worth of dashboards, far below --max-clients, so one
// address cannot take every slot.
inline constexpr size_t kDefaultMaxClientsPerIp = 256;

// Connections in their handshake, in all and from one address. Each holds
// a descriptor and up to 16 KiB of request head until kHandshakeTimeout. A
// real handshake takes a round trip or two, so even a reconnect storm of
// thousands keeps far fewer in flight; 1,024 x 16 KiB bounds head buffers
// at 16 MiB. 64 from one address lets a NAT's browsers reconnect at once
// while a slowloris from one address holds 64 descriptors, not all.
inline constexpr size_t kMaxHandshaking = 1024;
inline constexpr size_t kMaxHandshakingPerIp = 64;

// Descriptors ws-relay needs besides clients and handshakes: stdio, the
// listener, epoll, eventfds, the audit file, Redis, connections closing.
inline constexpr size_t kReservedFds = 64;

// 20 s pings keep nginx's 60 s proxy_read_timeout and most NAT tables happy;
// twice the interval before a client is declared dead.
inline constexpr double kDefaultPingInterval = 20.0;
inline constexpr double kPingTimeoutFactor = 2.0;  // --ping-timeout default, x interval

// An HTTP request head or TLS handshake must complete within this: a
// connection that never finishes its head holds a descriptor (slowloris).
inline constexpr double kHandshakeTimeout = 10.0;

// A slow client gets close 1013 queued; if it has not taken it within this
// time, the TCP connection is dropped.
inline constexpr double kSlowClientCloseGrace = 2.0;

// --exit-on-eof drains client queues for at most this long.
inline constexpr double kDefaultDrainTimeout = 5.0;

// An interrupt without its own `timeout` stays pending this long: five
// minutes is long enough for a human to notice a prompt and short enough
// that a forgotten script does not block for ever.
inline constexpr double kDefaultHitlTimeout = 300.0;

}  // namespace smws::protocol
