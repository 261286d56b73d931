// SPDX-License-Identifier: Apache-2.0
// ws-probe: connect to a WebSocket endpoint, watch it, and say why it ends.
#include "ws_probe.h"

#include "smws/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"Diagnose a WebSocket endpoint: timings, frames, how it ends, and why", "ws-probe"};
  ws_probe::ProbeOptions options;
  ws_probe::setup_ws_probe(app, options);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::shutdown::install();
  return ws_probe::run_ws_probe(options);
}
