// SPDX-License-Identifier: Apache-2.0
// ws-relay: NDJSON on stdin → every WebSocket client; client messages → stdout.
#include "smws/cli.h"
#include "smws/log.h"
#include "smws/shutdown.h"
#include "ws_relay.h"

int main(int argc, char** argv) {
  CLI::App app{"Broadcast NDJSON events from stdin to WebSocket clients", "ws-relay"};
  smws::RelayOptions options;
  smws::RelayOneShot one_shot;
  smws::setup_ws_relay(app, options);
  smws::setup_ws_relay_one_shot(app, one_shot);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::log::init("ws-relay", options.common.verbosity());
  if (int code = smws::run_ws_relay_one_shot(one_shot); code >= 0) return code;
  smws::shutdown::install();
  return smws::run_ws_relay(options);
}
