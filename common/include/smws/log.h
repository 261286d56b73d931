// Diagnostics on stderr, one format for every tool:
//   tool: error: what: why
//   tool: warning: ...
//   tool: ...                 (notes, shown with -v)
// Data never goes through here: stdout belongs to the tool's output.
//
// Thread-safety: every function may be called from any thread; each message
// is written with a single write(2), so lines from threads never interleave.
#pragma once

#include <string>
#include <string_view>

namespace smws::log {

// Call once at start-up, after flag parsing. verbosity: -1 quiet (-q), 0 the
// default, N > 0 for -v repeated N times. Colour is used only when stderr is a
// TTY and NO_COLOR is unset.
void init(std::string_view tool, int verbosity);

int verbosity();
const std::string& tool();

void error(std::string_view message);
void warn(std::string_view message);              // silenced by -q
void note(int level, std::string_view message);   // shown when verbosity >= level

// errno as "No such file or directory", for "what: why" messages.
std::string errno_text(int err);

}  // namespace smws::log
