// Placeholder main so the skeleton builds; replaced by the sm-send work.
#include "smws/cli.h"
#include "smws/log.h"

int main(int argc, char** argv) {
  CLI::App app{"Send an event datagram", "sm-send"};
  smws::CommonFlags common;
  smws::add_common_flags(app, common);
  if (auto code = smws::parse_flags(app, argc, argv)) return *code;
  smws::log::init("sm-send", common.verbosity());
  smws::log::error("not implemented yet");
  return 70;
}
