// SPDX-License-Identifier: Apache-2.0
// ASCII case folding for protocol tokens (HTTP header names and values, URL
// schemes, close reasons), which are case-insensitive in ASCII only: no
// locale, so "I" never becomes a dotless "ı".
#pragma once

#include <string>
#include <string_view>

namespace smws {

// s with A-Z turned into a-z; every other byte as it was.
std::string ascii_lower(std::string_view s);

}  // namespace smws
