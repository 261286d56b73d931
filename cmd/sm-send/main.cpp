// SPDX-License-Identifier: Apache-2.0
// sm-send: send events as Unix datagrams from shell scripts.
#include "sm_send.h"
#include "smws/cli.h"
#include "smws/log.h"
#include "smws/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"Send events as Unix datagrams (to sm-listen)", "sm-send"};
  smws::SmSendOptions options;
  smws::setup_sm_send(app, options);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::log::init("sm-send", options.common.verbosity());
  smws::shutdown::install();
  return smws::run_sm_send(options);
}
