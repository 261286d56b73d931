// SPDX-License-Identifier: Apache-2.0
// smws/ascii.h: case folding for protocol tokens.
#include <catch2/catch.hpp>
#include <string>

#include "smws/ascii.h"

TEST_CASE("ascii_lower folds A-Z only and keeps every other byte", "[ascii]") {
  CHECK(smws::ascii_lower("WebSocket Upgrade") == "websocket upgrade");
  CHECK(smws::ascii_lower("wss://H.Example:443") == "wss://h.example:443");
  CHECK(smws::ascii_lower("") == "");
  std::string bytes = "\xC3\x89T\xC9";  // UTF-8 "É", then "T", then a Latin-1 byte
  CHECK(smws::ascii_lower(bytes) == "\xC3\x89t\xC9");
  CHECK(smws::ascii_lower(std::string("A\0B", 3)) == std::string("a\0b", 3));
}
