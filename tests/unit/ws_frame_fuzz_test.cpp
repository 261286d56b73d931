// SPDX-License-Identifier: Apache-2.0
// Randomised checks of the frame codec (deterministic seeds, so a failure
// replays): chunking never changes what comes out, and arbitrary bytes never
// crash the reader (the suite runs under ASan/UBSan). A libFuzzer target for
// longer runs is tests/fuzz/ws_frame_fuzz.cpp.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "smws/ws_frame.h"

using namespace smws::ws;

namespace {

struct Outcome {
  std::vector<Message> messages;
  FrameReader::Status last = FrameReader::Status::kNeedMore;
  uint16_t code = 0;
};

Outcome read_in_chunks(Role role, const std::string& wire, std::mt19937& rng, size_t max_chunk,
                       size_t limit = 1 << 20) {
  FrameReader reader(role, limit);
  Outcome out;
  size_t pos = 0;
  while (pos < wire.size()) {
    size_t n = std::min(wire.size() - pos, size_t{1} + rng() % max_chunk);
    reader.feed(wire.data() + pos, n);
    pos += n;
    Message m;
    while ((out.last = reader.next(&m)) == FrameReader::Status::kMessage) out.messages.push_back(m);
    if (out.last == FrameReader::Status::kError) {
      out.code = reader.error_code();
      break;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("random valid traffic decodes identically whatever the chunking", "[ws_frame][fuzz]") {
  std::mt19937 rng(20261122);
  for (int round = 0; round < 300; ++round) {
    std::string wire;
    std::vector<Message> expected;
    const bool masked = round % 2 == 0;
    const Role role = masked ? Role::kServer : Role::kClient;
    int messages = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < messages; ++i) {
      uint8_t key[4] = {uint8_t(rng()), uint8_t(rng()), uint8_t(rng()), uint8_t(rng())};
      const uint8_t* k = masked ? key : nullptr;
      std::string payload(rng() % 300, '\0');
      for (auto& c : payload) c = static_cast<char>('a' + rng() % 26);
      if (payload.size() > 5 && rng() % 3 == 0) payload.replace(2, 3, "\xE2\x82\xAC");
      int fragments = 1 + static_cast<int>(rng() % 3);
      size_t step = payload.size() / fragments + 1;
      for (int f = 0; f < fragments; ++f) {
        size_t start = std::min(payload.size(), f * step);
        size_t len = (f == fragments - 1) ? payload.size() - start : std::min(step, payload.size() - start);
        append_frame(&wire, f == 0 ? Opcode::kText : Opcode::kContinuation, payload.substr(start, len),
                     f == fragments - 1, k);
        if (f + 1 < fragments && rng() % 2 == 0) {
          append_frame(&wire, Opcode::kPing, "hb", true, k);
          expected.push_back({Opcode::kPing, "hb"});
        }
      }
      expected.push_back({Opcode::kText, payload});
    }
    Outcome got = read_in_chunks(role, wire, rng, 1 + rng() % 64);
    REQUIRE(got.last == FrameReader::Status::kNeedMore);
    REQUIRE(got.messages.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      CHECK(got.messages[i].opcode == expected[i].opcode);
      CHECK(got.messages[i].payload == expected[i].payload);
    }
  }
}

TEST_CASE("arbitrary bytes give the same verdict whole or byte by byte, and never crash", "[ws_frame][fuzz]") {
  std::mt19937 rng(6455);
  for (int round = 0; round < 2000; ++round) {
    std::string wire(rng() % 200, '\0');
    for (auto& c : wire) c = static_cast<char>(rng());
    // Bias towards plausible headers so the deeper paths are reached.
    if (!wire.empty() && rng() % 2) wire[0] = static_cast<char>(0x80 | (rng() % 3));
    if (wire.size() > 1 && rng() % 2) wire[1] = static_cast<char>(0x80 | (rng() % 130));
    const Role role = rng() % 2 ? Role::kServer : Role::kClient;
    Outcome whole = read_in_chunks(role, wire, rng, wire.size() + 1, 150);
    Outcome bytes = read_in_chunks(role, wire, rng, 1, 150);
    REQUIRE(whole.last == bytes.last);
    REQUIRE(whole.code == bytes.code);
    REQUIRE(whole.messages.size() == bytes.messages.size());
    for (size_t i = 0; i < whole.messages.size(); ++i) {
      CHECK(whole.messages[i].payload == bytes.messages[i].payload);
      CHECK(whole.messages[i].payload.size() <= 150);
    }
  }
}
