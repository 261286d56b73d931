// SPDX-License-Identifier: Apache-2.0
// sm-listen's flags and its run function (SPEC "sm-listen"): bind the event
// socket, print each valid event as one NDJSON line on stdout.
//
// Single-threaded: one poll loop owns the socket, the stdout writer and the
// counters. Output is flushed whenever no datagram is pending, so a lone
// event reaches the pipe at once and a burst goes out in large writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "smws/cli.h"
#include "smws/event.h"

namespace smws {

struct SmListenOptions {
  std::string socket;               // --socket (SM_SOCKET, then the default)
  std::string mode = "0660";        // --mode, octal
  std::vector<std::string> types;   // --type (repeatable): keep only these
  uint64_t count = 0;               // --count: exit after N printed events; 0 = no limit
  double idle_timeout = -1;         // --idle-timeout seconds; < 0 = none
  size_t max_size = event::kDefaultMaxSize;
  CommonFlags common;
};

// Declares every flag on app (tests parse an argv through it).
void setup_sm_listen(CLI::App& app, SmListenOptions& options);

// Listens until --count/--idle-timeout, SIGINT/SIGTERM or a closed stdout;
// returns the exit code (SPEC: 0, 64, 69, 73, 74, 77).
int run_sm_listen(const SmListenOptions& options);

}  // namespace smws
