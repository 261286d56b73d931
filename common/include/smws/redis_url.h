// SPDX-License-Identifier: Apache-2.0
// The --redis URL of ws-relay: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
// (SPEC "ws-relay across machines"). Pure parsing, no I/O.
#pragma once

#include <cstdint>
#include <string>

#include "smws/status.h"

namespace smws::redis {

struct RedisUrl {
  std::string host;
  uint16_t port = 6379;
  std::string user;      // empty: AUTH with the password only (the default user)
  std::string password;  // empty: no AUTH
  int db = 0;
  bool has_auth() const { return !password.empty(); }
  // host:port/db for messages (never the password).
  std::string display() const;
};

// Parses text into *out. A malformed URL is Status::kUsage with a message
// naming it and what is wrong ("--redis 'redis://h:x': port must be 1-65535"),
// which ws-relay maps to exit 64. Percent-escapes in USER and PASSWORD are
// decoded (a password may contain '@' or ':' that way). IPv6 hosts go in
// brackets: redis://[::1]:6379.
Status parse_url(const std::string& text, RedisUrl* out);

// A Sentinel's address (--redis-sentinel HOST:PORT).
struct HostPort {
  std::string host;
  uint16_t port = 26379;
  std::string display() const;  // host:port, IPv6 in brackets
};

// "HOST[:PORT]" (IPv6 in brackets; default port 26379, Sentinel's) into
// *out. Malformed: Status::kUsage naming the flag, the value and the fault.
Status parse_sentinel(const std::string& text, HostPort* out);

}  // namespace smws::redis
