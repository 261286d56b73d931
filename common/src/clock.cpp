// SPDX-License-Identifier: Apache-2.0
#include "smws/clock.h"

#include <time.h>

namespace smws {
namespace {

double seconds_of(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

double wall_seconds() { return seconds_of(CLOCK_REALTIME); }
double monotonic_seconds() { return seconds_of(CLOCK_MONOTONIC); }

}  // namespace smws
