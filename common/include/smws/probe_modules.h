// SPDX-License-Identifier: Apache-2.0
// ws-probe --serve's configuration (--config FILE, JSON; SPEC "ws-probe as a
// monitor"): the named probe modules, the allow_targets patterns that keep
// the exporter from being an open proxy, and the held-open watches. Pure:
// parsing and matching only, no sockets, so the unit tests read it as the
// format's specification; docs/monitoring.md documents the same format.
//
//   {"modules": {"NAME": {"duration": 5, "send": ["…"],
//                         "expect": {"regex": "…", "min_messages": 1},
//                         "headers": {"K": "V"}, "token_file": "/etc/smws/token",
//                         "subprotocol": "smws.v1", "origin": "…", "insecure": false,
//                         "deflate": false, "ping": 0, "confirm": true,
//                         "find_idle_timeout": 120}},
//    "allow_targets": ["ws://127.0.0.1:*", "wss://*.example.com/ws/*"],
//    "watch": ["ws://…", {"target": "ws://…", "module": "NAME"}]}
//
// Unknown keys are errors (a typo must not silently probe something else).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "smws/status.h"

namespace smws {

// A module's duration when it names none (the blackbox exporter's scrape).
inline constexpr double kDefaultModuleDuration = 5.0;
// expect.regex looks at the first this many bytes of each message: std::regex
// recurses per character, and a message is the server's, not the operator's.
inline constexpr size_t kExpectScanBytes = 4096;

struct ProbeModule {
  std::string name;
  double duration_s = kDefaultModuleDuration;
  std::vector<std::string> send;
  std::optional<std::regex> expect_regex;
  std::string expect_regex_text;
  size_t expect_min_messages = 0;   // 0: no minimum
  std::vector<std::pair<std::string, std::string>> headers;
  std::string token_file;           // read at each probe: "Authorization: Bearer <first line>"
  std::vector<std::string> subprotocols;
  std::string origin;
  bool insecure = false;
  bool deflate = false;             // offer permessage-deflate
  double ping_s = 0;                // 0: send no pings
  bool confirm = true;              // run the confirming trial when two causes fit (within the budget)
  double find_idle_timeout_s = 0;   // 0: off; else the search's MAX, within duration_s

  bool has_expect() const { return expect_regex.has_value() || expect_min_messages > 0; }
};

// One allow_targets entry, "SCHEME://HOST[:PORT][/PATH]" with shell globs
// (* ? [..]) in HOST, PORT and PATH, each matched against that part of the
// target alone (so a '*' in the host never reaches into the path or query).
// An omitted PORT is the scheme's default (80, 443), an omitted PATH any path;
// ws:// and http:// are one scheme, as are wss:// and https://.
struct TargetPattern {
  std::string text;
  bool tls = false;
  std::string host;  // lower case
  std::string port;  // glob over the decimal port
  std::string path;  // glob over path plus query; "*" when omitted
};
std::optional<TargetPattern> parse_target_pattern(std::string_view text, std::string* error);
bool target_matches(const TargetPattern& p, bool tls, std::string_view host, uint16_t port,
                    std::string_view target);

struct WatchEntry {
  std::string target;  // the URL as configured
  std::string module;  // "" : the default module
};

struct ExporterConfig {
  std::vector<ProbeModule> modules;  // always holds "default"
  // Without allow_targets, only loopback targets (localhost, 127.0.0.0/8,
  // [::1]) are allowed: the exporter is never an open proxy by default.
  std::vector<TargetPattern> allow_targets;
  bool allow_targets_given = false;
  std::vector<WatchEntry> watch;

  const ProbeModule* module(std::string_view name) const;
  // "default, slow, tls" for the 400 that names the known ones.
  std::string module_names() const;
  bool allowed(bool tls, std::string_view host, uint16_t port, std::string_view target) const;
};

// A config holding only the default module (no --config).
ExporterConfig default_exporter_config();
// Parses the JSON text of --config. kBadInput with a message naming the key
// and what is wrong ("modules.slow.duration: expected seconds > 0").
Status parse_exporter_config(std::string_view text, ExporterConfig* out);

// The messages' test for a module's expect: regex over the first
// kExpectScanBytes of one message.
bool expect_matches(const ProbeModule& m, std::string_view message);

}  // namespace smws
