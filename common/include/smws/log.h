// SPDX-License-Identifier: Apache-2.0
// Diagnostics on stderr, one format for every tool:
//   tool: error: what: why
//   tool: warning: ...
//   tool: ...                 (notes, shown with -v)
// Data never goes through here: stdout belongs to the tool's output.
//
// Thread-safety: every function may be called from any thread; each message
// is written with a single write(2), so lines from threads never interleave.
//
// Blocking: by default a message is written at once, with a blocking
// write(2). A tool whose thread must never block (ws-relay's event loop:
// a stderr pipe nobody reads would stop it) starts an AsyncStderr: while it
// lives, messages go to a bounded queue that a thread of its own writes;
// past the bound they are dropped and counted (dropped_lines()), and a line
// saying how many is written once stderr takes lines again.
#pragma once

#include <cstddef>
#include <cstdint>
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

// Messages dropped because the asynchronous stderr queue was full.
uint64_t dropped_lines();

// Scope of asynchronous stderr (one at a time, created on the main thread
// after init(), before other threads log). Threads: any thread logs; the
// creator destroys it after the threads that log have stopped, or calls
// stop_async() itself (before a _Exit).
class AsyncStderr {
 public:
  // A few seconds of warnings at a high rate; 1 MiB bounds the memory of a
  // stderr that stopped being read.
  explicit AsyncStderr(size_t max_lines = 10000, size_t max_bytes = size_t{1} << 20);
  ~AsyncStderr();
  AsyncStderr(const AsyncStderr&) = delete;
  AsyncStderr& operator=(const AsyncStderr&) = delete;
};

// Ends asynchronous stderr: writes what is queued (within `seconds`), then
// messages are written directly again. When stderr does not take them in
// time, the writer is left blocked in write(2) and later messages are
// dropped (counted): writing them directly would block the caller. False
// then. Idempotent; true when no AsyncStderr is running.
bool stop_async(double seconds = 1.0);

}  // namespace smws::log
