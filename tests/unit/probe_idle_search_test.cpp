// SPDX-License-Identifier: Apache-2.0
// --find-idle-timeout's search (smws/probe_idle_search.h): which silence each
// trial holds, when it stops, and how precisely it knows the timeout.
#include <catch2/catch.hpp>

#include "smws/probe_idle_search.h"

using namespace smws;

TEST_CASE("idle search: the first trial holds MAX", "[probe][idle_search]") {
  IdleSearch s(130);
  CHECK_FALSE(s.done());
  CHECK(s.next_silence_s() == 130);
  CHECK_FALSE(s.upper_s());
  CHECK_FALSE(s.precision_s());
}

TEST_CASE("idle search: a drop, then surviving just under it, brackets the timeout in two trials", "[probe][idle_search]") {
  IdleSearch s(130);
  s.record(false, 60.2);  // dropped after 60.2 s of silence
  REQUIRE(s.upper_s());
  CHECK(*s.upper_s() == Approx(60.2));
  CHECK_FALSE(s.done());
  CHECK(s.tolerance_s() == Approx(0.05 * 60.2));
  CHECK(s.next_silence_s() == Approx(60.2 - 0.05 * 60.2 / 2));
  s.record(true, s.next_silence_s());
  CHECK(s.done());
  CHECK(s.trials() == 2);
  CHECK(*s.precision_s() == Approx(0.05 * 60.2 / 2));
}

TEST_CASE("idle search: short timeouts are bracketed to 0.25 s, not 5 %", "[probe][idle_search]") {
  IdleSearch s(5);
  s.record(false, 2.0);
  CHECK(s.tolerance_s() == Approx(0.25));
  CHECK(s.next_silence_s() == Approx(1.875));
}

TEST_CASE("idle search: being dropped again lowers the bound and searches on", "[probe][idle_search]") {
  IdleSearch s(10);
  s.record(false, 4.0);
  s.record(false, 3.0);  // a timer that varies, or traffic elsewhere
  CHECK(*s.upper_s() == Approx(3.0));
  CHECK_FALSE(s.done());
  CHECK(s.next_silence_s() == Approx(3.0 - 0.125));
}

TEST_CASE("idle search: surviving MAX ends it with no timeout", "[probe][idle_search]") {
  IdleSearch s(8);
  s.record(true, 7.9);
  CHECK(s.done());
  CHECK_FALSE(s.upper_s());
  CHECK(s.lower_s() == Approx(7.9));
}

TEST_CASE("idle search: stops after kIdleMaxTrials whatever the bracket", "[probe][idle_search]") {
  IdleSearch s(100);
  for (int i = 0; i < kIdleMaxTrials; ++i) {
    REQUIRE_FALSE(s.done());
    s.record(false, 50.0 - i);  // never survives
  }
  CHECK(s.done());
  CHECK(s.trials() == kIdleMaxTrials);
  CHECK(*s.precision_s() == Approx(50.0 - (kIdleMaxTrials - 1)));  // only the upper bound is known
}
