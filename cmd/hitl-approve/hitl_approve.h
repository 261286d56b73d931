// SPDX-License-Identifier: Apache-2.0
// hitl-approve: answer ws-relay's approval requests from a terminal, from a
// script (NDJSON decisions on stdin) or by rule (--auto/--match).
// The contract is the SPEC's "hitl-approve" section and docs/hitl.md.
#pragma once

#include <string>
#include <vector>

#include "smws/cli.h"

namespace smws {

struct HitlApproveOptions {
  std::string url;
  std::string as;                  // decided_by; default $USER@host
  std::string auto_decision;       // "", "approve" or "reject"
  std::vector<std::string> match;  // fnmatch globs on action names (with --auto)
  bool list = false;
  bool once = false;
  std::string decisions;           // "" (automatic), "-" (stdin) or a file
  bool no_reconnect = false;
  std::string token;               // --token / WS_RELAY_TOKEN
  bool insecure = false;
  double connect_timeout = 10;
  CommonFlags common;
};

void setup_hitl_approve(CLI::App& app, HitlApproveOptions& options);

// Runs the tool; returns its exit code (smws/exit_code.h).
int run_hitl_approve(const HitlApproveOptions& options);

}  // namespace smws
