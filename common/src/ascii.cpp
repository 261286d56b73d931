// SPDX-License-Identifier: Apache-2.0
#include "smws/ascii.h"

namespace smws {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace smws
