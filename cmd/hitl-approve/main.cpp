// SPDX-License-Identifier: Apache-2.0
// hitl-approve: parse flags, run, return the exit code.
#include "hitl_approve.h"
#include "smws/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"Answer human-in-the-loop approval requests from ws-relay", "hitl-approve"};
  smws::HitlApproveOptions options;
  smws::setup_hitl_approve(app, options);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::shutdown::install();
  return smws::run_hitl_approve(options);
}
