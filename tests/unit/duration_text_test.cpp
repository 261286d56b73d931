// SPDX-License-Identifier: Apache-2.0
// smws::duration_text: durations in messages as a person writes them.
#include <catch2/catch.hpp>

#include <limits>

#include "smws/duration_text.h"

using smws::duration_text;

TEST_CASE("whole seconds have no decimals", "[duration_text]") {
  CHECK(duration_text(8) == "8 s");
  CHECK(duration_text(0) == "0 s");
  CHECK(duration_text(60) == "60 s");
  CHECK(duration_text(3600) == "3600 s");
}

TEST_CASE("fractions keep only the digits that matter, to the millisecond", "[duration_text]") {
  CHECK(duration_text(1.5) == "1.5 s");
  CHECK(duration_text(0.25) == "0.25 s");
  CHECK(duration_text(0.125) == "0.125 s");
  CHECK(duration_text(2.0004) == "2 s");
  CHECK(duration_text(0.9999) == "1 s");
  CHECK(duration_text(0.1 + 0.2) == "0.3 s");
}

TEST_CASE("a duration below a millisecond never reads as 0", "[duration_text]") {
  CHECK(duration_text(0.0004) == "0.0004 s");
  CHECK(duration_text(0.001) == "0.001 s");
}

TEST_CASE("negative and non-finite values still print", "[duration_text]") {
  CHECK(duration_text(-1.5) == "-1.5 s");
  CHECK(duration_text(-0.0) == "0 s");
  CHECK(duration_text(std::numeric_limits<double>::infinity()) == "inf s");
}
