// SPDX-License-Identifier: Apache-2.0
// Flag handling shared by every tool's setup_<tool>/main, on CLI11:
// --help (stdout, exit 0), --version ("NAME VERSION", then a line "License:
// Apache-2.0"; exit 0), -q/--quiet, -v/--verbose (repeatable), and parse
// errors reported as "tool: error: ..." with exit 64 (CLI11's own codes, 100
// and up, never leak).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace smws {

struct CommonFlags {
  int verbose = 0;
  bool quiet = false;
  // -1 with -q, else the number of -v.
  int verbosity() const { return quiet ? -1 : verbose; }
};

// Adds -q/-v/--version to app. The tool name used in --version is app's name.
void add_common_flags(CLI::App& app, CommonFlags& flags);

// Parses argv. Returns nullopt when the tool should go on running, or the exit
// code to return right away (0 after --help/--version, 64 on a usage error,
// which is reported on stderr with a hint to run --help).
std::optional<int> parse_flags(CLI::App& app, int argc, const char* const* argv);

// A CLI11 validator for durations in seconds: a finite number >= 0
// (fractions allowed, e.g. 1.5).
extern const CLI::Validator kSeconds;

}  // namespace smws
