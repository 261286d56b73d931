// SPDX-License-Identifier: Apache-2.0
#include "smws/probe_idle_search.h"

#include <algorithm>

namespace smws {

std::optional<double> IdleSearch::upper_s() const {
  if (upper_ < 0) return std::nullopt;
  return upper_;
}

std::optional<double> IdleSearch::precision_s() const {
  if (upper_ < 0) return std::nullopt;
  return std::max(0.0, upper_ - lower_);
}

double IdleSearch::tolerance_s() const {
  return std::max(kIdleToleranceMin, kIdleToleranceFraction * (upper_ < 0 ? max_s_ : upper_));
}

double IdleSearch::next_silence_s() const {
  if (trials_ == 0 || upper_ < 0) return max_s_;
  // Just under the bound: surviving it brackets the timeout within the tolerance.
  return std::max(lower_, upper_ - tolerance_s() / 2);
}

bool IdleSearch::done() const {
  if (trials_ >= kIdleMaxTrials) return true;
  if (trials_ == 0) return false;
  if (upper_ < 0) return true;  // survived MAX: no idle timeout up to MAX
  return upper_ - lower_ <= tolerance_s();
}

void IdleSearch::record(bool survived, double silence_s) {
  ++trials_;
  if (survived) {
    lower_ = std::max(lower_, silence_s);
  } else {
    upper_ = upper_ < 0 ? silence_s : std::min(upper_, silence_s);
  }
}

}  // namespace smws
