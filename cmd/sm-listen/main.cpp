// SPDX-License-Identifier: Apache-2.0
// sm-listen: Unix datagrams in, NDJSON out.
#include "sm_listen.h"
#include "smws/cli.h"
#include "smws/log.h"
#include "smws/shutdown.h"

int main(int argc, char** argv) {
  CLI::App app{"Receive event datagrams and print them as NDJSON", "sm-listen"};
  smws::SmListenOptions options;
  smws::setup_sm_listen(app, options);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::log::init("sm-listen", options.common.verbosity());
  smws::shutdown::install();
  return smws::run_sm_listen(options);
}
