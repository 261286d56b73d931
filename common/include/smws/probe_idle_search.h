// SPDX-License-Identifier: Apache-2.0
// --find-idle-timeout's search, apart from sockets: which silence to hold
// next, when to stop, and what was measured. The driver (smws/net/probe.h,
// find_idle_timeout) holds one silent connection per trial and reports here
// whether it survived the silence and how long the silence was.
//
// Why not plain bisection: a drop measures the timeout directly (the silence
// at the drop is the path's idle timer, give or take the proxy's own last
// activity), so the first trial, held for MAX, already gives the upper bound
// to within the timer's granularity. Bisection over [0, MAX] would need
// log2(MAX / precision) trials, each up to MAX long (60 s to 130 s behind real
// proxies). Instead the second trial holds just under that bound: surviving
// it brackets the timeout within the precision in two trials; being dropped
// again lowers the bound (a timer that varies, or traffic elsewhere on the
// path) and the search repeats under the new bound, at most kIdleMaxTrials
// times. docs/troubleshooting-1006.md states the same.
#pragma once

#include <optional>

namespace smws {

// The search stops when the bracket is this narrow: 5 % of the timeout, at
// least 0.25 s (below that, scheduling noise on both ends dominates).
inline constexpr double kIdleToleranceFraction = 0.05;
inline constexpr double kIdleToleranceMin = 0.25;
// And after this many trials whatever the bracket.
inline constexpr int kIdleMaxTrials = 8;

class IdleSearch {
 public:
  explicit IdleSearch(double max_s) : max_s_(max_s) {}

  // Seconds of silence the next trial should hold (after its greeting).
  double next_silence_s() const;
  bool done() const;

  // One trial: survived (the probe closed it after silence_s) or dropped
  // after silence_s without a frame.
  void record(bool survived, double silence_s);

  int trials() const { return trials_; }
  double lower_s() const { return lower_; }  // longest silence survived (0: none yet)
  std::optional<double> upper_s() const;     // shortest silence dropped at
  // Width of the bracket [lower, upper]: how precisely the timeout is known.
  // nullopt while there is no upper bound (no drop up to MAX).
  std::optional<double> precision_s() const;
  double tolerance_s() const;  // the width at which the search stops

 private:
  double max_s_;
  double lower_ = 0;
  double upper_ = -1;  // < 0: none
  int trials_ = 0;
};

}  // namespace smws
