// SPDX-License-Identifier: Apache-2.0
#include "smws/duration_text.h"

#include <cmath>
#include <cstdio>

namespace smws {

std::string duration_text(double seconds) {
  char buf[64];
  if (!std::isfinite(seconds)) {
    std::snprintf(buf, sizeof buf, "%g", seconds);
    return std::string(buf) + " s";
  }
  double magnitude = std::fabs(seconds);
  if (magnitude > 0 && magnitude < 0.0005) {
    std::snprintf(buf, sizeof buf, "%.2g", seconds);  // e.g. 0.0004 or 1.5e-06
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", seconds);
    std::string text = buf;
    text.erase(text.find_last_not_of('0') + 1);
    if (text.back() == '.') text.pop_back();
    if (text == "-0") text = "0";
    return text + " s";
  }
  return std::string(buf) + " s";
}

}  // namespace smws
