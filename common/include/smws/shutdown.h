// SPDX-License-Identifier: Apache-2.0
// SIGINT/SIGTERM → an atomic flag plus a self-pipe, so any poll/epoll loop can
// wake up on a signal (add shutdown::fd() to its set) and every blocking wait
// in the tools can be cancelled. SIGPIPE is ignored: a closed stdout shows up
// as EPIPE from write(2), which producers treat as a quiet exit 0.
//
// install() is called once by main() before any thread starts.
#pragma once

namespace smws::shutdown {

void install();

// True once SIGINT or SIGTERM arrived (or request() was called).
bool requested();

// Readable once shutdown is requested; never drained, so it stays readable.
int fd();

// Ask for shutdown from inside the program (e.g. --count reached).
void request();

}  // namespace smws::shutdown
