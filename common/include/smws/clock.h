// SPDX-License-Identifier: Apache-2.0
// The library's two clocks as plain seconds, so that pure logic can take a
// `now` argument (HitlTable, HitlClient) and tests can pass any number.
#pragma once

namespace smws {

// Seconds since the Unix epoch (CLOCK_REALTIME), for timestamps written into
// messages and records ("logged_at", "timestamp").
double wall_seconds();

// Seconds on CLOCK_MONOTONIC (what steady_clock reads on Linux), for
// deadlines and timeouts: immune to the wall clock being set.
double monotonic_seconds();

}  // namespace smws
