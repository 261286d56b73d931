// SPDX-License-Identifier: Apache-2.0
// ws-probe's flags and its run: setup_ws_probe() declares every flag on a
// CLI::App (tests can parse an argv without running anything), run_ws_probe()
// checks their combination, probes, prints the report and returns the exit
// code (smws/exit_code.h). The probing itself is smws/net/probe.h; the
// judgement is smws/probe_verdict.h. With --serve it runs the exporter
// (smws/net/probe_exporter.h) until SIGINT/SIGTERM instead.
#pragma once

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>
#include <vector>

#include "smws/cli.h"

namespace ws_probe {

struct ProbeOptions {
  std::string url;
  double duration = 30;          // --duration; with --cat unlimited unless given
  double ping = 0;               // --ping S: send pings, measure RTT
  bool no_pong = false;
  bool app_pong = false;
  std::vector<std::string> send;
  std::vector<std::string> headers;       // -H "K: V"
  std::string origin;
  std::vector<std::string> subprotocols;  // repeatable, or comma-separated
  bool insecure = false;
  bool deflate = false;          // offer permessage-deflate
  double connect_timeout = 10;
  size_t connections = 1;
  size_t repeat = 1;
  bool cat = false;
  bool json = false;
  bool no_confirm = false;       // skip the confirming trial
  double find_idle_timeout = 0;  // MAX seconds; 0 = off
  // The exporter (--serve): smws/net/probe_exporter.h.
  std::string serve;             // HOST:PORT; "" = one probe of URL
  std::string config_file;       // --config FILE (JSON modules, allow_targets, watch)
  std::vector<std::string> watch;  // --watch URL (repeatable)
  size_t max_concurrent = 16;
  smws::CommonFlags common;

  CLI::Option* duration_option = nullptr;  // to tell "given" from the default
};

void setup_ws_probe(CLI::App& app, ProbeOptions& options);
int run_ws_probe(const ProbeOptions& options);

}  // namespace ws_probe
