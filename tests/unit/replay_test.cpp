// sm-send --replay's schedule and line classification (smws/replay.h).
#include <catch2/catch.hpp>
#include <optional>
#include <string>

#include "smws/replay.h"

using smws::replay::build_datagram;
using smws::replay::classify;
using smws::replay::Line;
using smws::replay::LineKind;
using smws::replay::Schedule;

TEST_CASE("offsets follow the recorded spacing, divided by the speed", "[replay]") {
  Schedule s(4, -1);
  CHECK(s.next(1000.0) == Approx(0));
  CHECK(s.next(1001.0) == Approx(0.25));
  CHECK(s.next(1003.0) == Approx(0.75));
}

TEST_CASE("max-gap shortens only the silences longer than it", "[replay]") {
  Schedule s(1, 2);
  CHECK(s.next(10.0) == Approx(0));
  CHECK(s.next(11.5) == Approx(1.5));
  CHECK(s.next(3611.5) == Approx(3.5));  // an hour of silence became 2 s
  CHECK(s.next(3612.0) == Approx(4.0));
}

TEST_CASE("an unstamped event is due right after the one before it", "[replay]") {
  Schedule s(1, -1);
  CHECK(s.next(5.0) == Approx(0));
  CHECK(s.next(std::nullopt) == Approx(0));
  CHECK(s.next(7.0) == Approx(2));
  CHECK(s.next(std::nullopt) == Approx(2));
  CHECK(s.next(8.0) == Approx(3));
}

TEST_CASE("a stamp that goes backwards is due at once and becomes the reference", "[replay]") {
  Schedule s(1, -1);
  s.next(10.0);
  CHECK(s.next(4.0) == Approx(0));
  CHECK(s.next(5.0) == Approx(1));
}

TEST_CASE("a new pass starts right after the last event and offsets keep growing", "[replay]") {
  Schedule s(2, -1);
  s.next(0.0);
  CHECK(s.next(4.0) == Approx(2));
  s.restart();
  CHECK(s.next(0.0) == Approx(2));
  CHECK(s.next(4.0) == Approx(4));
}

TEST_CASE("a million evenly spaced stamps end where the recording does (no drift)", "[replay]") {
  Schedule s(1000, -1);
  double last = 0;
  for (int i = 0; i < 1000000; ++i) last = s.next(1.7e9 + i * 0.001);
  CHECK(last == Approx(999.999 / 1000).epsilon(1e-6));
}

TEST_CASE("lines are blank, events with or without a numeric stamp, or bad", "[replay]") {
  smws::event::Scan scan;
  Line line;
  classify("  \t", &scan, &line);
  CHECK(line.kind == LineKind::kBlank);

  classify(R"({"type":"a","timestamp":1729845678.5,"n":1})", &scan, &line);
  REQUIRE(line.kind == LineKind::kEvent);
  REQUIRE(line.timestamp);
  CHECK(*line.timestamp == 1729845678.5);

  classify(R"({"type":"a","timestamp":"yesterday"})", &scan, &line);
  REQUIRE(line.kind == LineKind::kEvent);
  CHECK(line.has_timestamp);
  CHECK_FALSE(line.timestamp);

  classify(R"({"type":"a"})", &scan, &line);
  REQUIRE(line.kind == LineKind::kEvent);
  CHECK_FALSE(line.has_timestamp);

  for (const char* bad : {"not json", "[1,2]", R"({"type":""})", R"({"n":1})", R"({"type":3})"}) {
    classify(bad, &scan, &line);
    INFO(bad);
    CHECK(line.kind == LineKind::kBad);
    CHECK_FALSE(line.error.empty());
  }
}

TEST_CASE("the datagram carries the time of sending unless stamps are kept", "[replay]") {
  smws::event::Scan scan;
  Line line;
  classify(R"( {"type":"a","timestamp":12.5,"n":1} )", &scan, &line);
  std::string out;
  build_datagram(&out, line, "99.0", false);
  CHECK(out == R"({"type":"a","timestamp":99.0,"n":1})");
  out.clear();
  build_datagram(&out, line, "99.0", true);
  CHECK(out == R"({"type":"a","timestamp":12.5,"n":1})");

  classify(R"({"type":"a"})", &scan, &line);
  out.clear();
  build_datagram(&out, line, "99.0", true);
  CHECK(out == R"({"type":"a","timestamp":99.0})");
}

TEST_CASE("an event only a DOM can read still gets its stamp read and rewritten", "[replay]") {
  smws::event::Scan scan;
  Line line;
  // An escape in a top-level key sends scan() to its reference path.
  classify(R"({"type":"a","k\u0041":1,"timestamp":7})", &scan, &line);
  REQUIRE(line.kind == LineKind::kEvent);
  REQUIRE(line.timestamp);
  CHECK(*line.timestamp == 7);
  std::string out;
  build_datagram(&out, line, "99.5", false);
  CHECK(out.find("99.5") != std::string::npos);
  CHECK(out.find(":7") == std::string::npos);
}
