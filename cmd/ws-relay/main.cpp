// SPDX-License-Identifier: Apache-2.0
// ws-relay: NDJSON on stdin → every WebSocket client; client messages → stdout.
#include "smws/cli.h"
#include "smws/log.h"
#include "smws/shutdown.h"
#include "ws_relay.h"

int main(int argc, char** argv) {
  CLI::App app{"Broadcast NDJSON events from stdin to WebSocket clients", "ws-relay"};
  smws::RelayOptions options;
  smws::setup_ws_relay(app, options);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::log::init("ws-relay", options.common.verbosity());
  smws::shutdown::install();
  return smws::run_ws_relay(options);
}
