// SPDX-License-Identifier: Apache-2.0
#include "smws/cli.h"

#include <cmath>
#include <cstdio>

#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/version.h"

namespace smws {

void add_common_flags(CLI::App& app, CommonFlags& flags) {
  app.add_flag("-v,--verbose", flags.verbose, "More detail on stderr (repeatable)");
  app.add_flag("-q,--quiet", flags.quiet, "Silence warnings");
  // SPEC's "NAME VERSION" first; the licence on a line of its own after it.
  app.set_version_flag("--version", app.get_name() + " " + kVersion + "\nLicense: Apache-2.0",
                       "Print the version and exit");
}

std::optional<int> parse_flags(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // help on stdout, 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);  // "NAME VERSION" and "License: Apache-2.0" on stdout, 0
  } catch (const CLI::ParseError& e) {
    if (log::tool() != app.get_name()) log::init(app.get_name(), 0);
    log::error(e.what());
    std::fprintf(stderr, "Run '%s --help' for usage.\n", app.get_name().c_str());
    return kExitUsage;
  }
}

const CLI::Validator kSeconds(
    [](std::string& input) -> std::string {
      try {
        size_t used = 0;
        double v = std::stod(input, &used);
        if (used != input.size() || !std::isfinite(v) || v < 0) throw std::invalid_argument(input);
      } catch (const std::exception&) {
        return "'" + input + "' is not a duration in seconds (a number >= 0, e.g. 1.5)";
      }
      return {};
    },
    "SECONDS");

}  // namespace smws
