// SPDX-License-Identifier: Apache-2.0
// Durations in messages as a person writes them: "8 s", "1.5 s", "0.25 s"
// (never "8.000000 s"). One function for every tool's diagnostics.
#pragma once

#include <string>

namespace smws {

// seconds rounded to the millisecond, trailing zeros dropped, then " s":
// 8 -> "8 s", 1.5 -> "1.5 s", 0.25 -> "0.25 s", 0.0004 -> "0.0004 s" (below a
// millisecond, two significant digits so a small value never reads as 0).
std::string duration_text(double seconds);

}  // namespace smws
