// SPDX-License-Identifier: Apache-2.0
#include "smws/ws_frame.h"

#include <catch2/catch.hpp>

#include <string>

using namespace smws::ws;

namespace {

const uint8_t kKey[4] = {0x37, 0xfa, 0x21, 0x3d};

// Feeds bytes one at a time, collecting every message: the worst case of a
// socket delivering a frame in pieces.
std::vector<Message> feed_bytewise(FrameReader& reader, const std::string& bytes,
                                   FrameReader::Status* last = nullptr) {
  std::vector<Message> out;
  FrameReader::Status status = FrameReader::Status::kNeedMore;
  for (char c : bytes) {
    reader.feed(&c, 1);
    Message m;
    while ((status = reader.next(&m)) == FrameReader::Status::kMessage) out.push_back(m);
    if (status == FrameReader::Status::kError) break;
  }
  if (last) *last = status;
  return out;
}

}  // namespace

TEST_CASE("RFC 6455 example frames decode: unmasked and masked 'Hello'", "[ws_frame]") {
  FrameReader client(Role::kClient);
  client.feed(std::string("\x81\x05\x48\x65\x6c\x6c\x6f", 7));
  Message m;
  REQUIRE(client.next(&m) == FrameReader::Status::kMessage);
  CHECK(m.opcode == Opcode::kText);
  CHECK(m.payload == "Hello");

  FrameReader server(Role::kServer);
  server.feed(std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11));
  REQUIRE(server.next(&m) == FrameReader::Status::kMessage);
  CHECK(m.payload == "Hello");
  CHECK(server.next(&m) == FrameReader::Status::kNeedMore);
}

TEST_CASE("encoded frames round-trip at every length encoding, fed byte by byte", "[ws_frame]") {
  for (size_t size : {size_t{0}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}, size_t{70000}}) {
    std::string payload(size, 'x');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + i % 26);
    FrameReader server(Role::kServer);
    auto got = feed_bytewise(server, encode_frame(Opcode::kBinary, payload, true, kKey));
    REQUIRE(got.size() == 1);
    CHECK(got[0].opcode == Opcode::kBinary);
    CHECK(got[0].payload == payload);

    FrameReader client(Role::kClient);
    client.feed(encode_frame(Opcode::kText, payload));
    Message m;
    REQUIRE(client.next(&m) == FrameReader::Status::kMessage);
    CHECK(m.payload == payload);
  }
}

TEST_CASE("fragmented message is reassembled and a ping between fragments comes out first", "[ws_frame]") {
  std::string wire;
  append_frame(&wire, Opcode::kText, "Hel", false, kKey);
  append_frame(&wire, Opcode::kPing, "p", true, kKey);
  append_frame(&wire, Opcode::kContinuation, "lo \xE2\x82", false, kKey);  // € split across frames
  append_frame(&wire, Opcode::kContinuation, "\xAC", true, kKey);
  FrameReader server(Role::kServer);
  auto got = feed_bytewise(server, wire);
  REQUIRE(got.size() == 2);
  CHECK(got[0].opcode == Opcode::kPing);
  CHECK(got[0].payload == "p");
  CHECK(got[1].opcode == Opcode::kText);
  CHECK(got[1].payload == "Hello \xE2\x82\xAC");
  CHECK_FALSE(server.in_fragmented_message());
}

TEST_CASE("protocol violations fail with the RFC 6455 close code", "[ws_frame]") {
  struct Case {
    const char* what;
    std::string wire;
    Role role;
    uint16_t code;
  };
  std::string big_ping = encode_frame(Opcode::kPing, std::string(126, 'p'), true, kKey);
  std::string bad_utf8 = encode_frame(Opcode::kText, "ok\xC0\xAF", true, kKey);
  std::string truncated_utf8;
  append_frame(&truncated_utf8, Opcode::kText, "a\xE2", false, kKey);
  append_frame(&truncated_utf8, Opcode::kContinuation, "b", true, kKey);
  std::string nested;
  append_frame(&nested, Opcode::kText, "a", false, kKey);
  append_frame(&nested, Opcode::kText, "b", true, kKey);
  std::string bad_close_code = encode_frame(Opcode::kClose, std::string("\x03\xEE", 2), true, kKey);  // 1006
  std::string one_byte_close = encode_frame(Opcode::kClose, std::string("\x03", 1), true, kKey);

  std::vector<Case> cases = {
      {"unmasked client frame", encode_frame(Opcode::kText, "hi"), Role::kServer, kCloseProtocolError},
      {"masked server frame", encode_frame(Opcode::kText, "hi", true, kKey), Role::kClient, kCloseProtocolError},
      {"unknown opcode 3", std::string("\x83\x80\x00\x00\x00\x00", 6), Role::kServer, kCloseProtocolError},
      {"reserved bit", std::string("\xC1\x80\x00\x00\x00\x00", 6), Role::kServer, kCloseProtocolError},
      {"control frame over 125 bytes", big_ping, Role::kServer, kCloseProtocolError},
      {"fragmented ping", std::string("\x09\x80\x00\x00\x00\x00", 6), Role::kServer, kCloseProtocolError},
      {"continuation without start", encode_frame(Opcode::kContinuation, "x", true, kKey), Role::kServer, kCloseProtocolError},
      {"new message inside fragmented one", nested, Role::kServer, kCloseProtocolError},
      {"invalid UTF-8 text", bad_utf8, Role::kServer, kCloseInvalidPayload},
      {"UTF-8 character split and never finished", truncated_utf8, Role::kServer, kCloseInvalidPayload},
      {"close code 1006 on the wire", bad_close_code, Role::kServer, kCloseProtocolError},
      {"1-byte close payload", one_byte_close, Role::kServer, kCloseProtocolError},
      {"64-bit length with top bit", std::string("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00", 10), Role::kServer, kCloseProtocolError},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    FrameReader reader(c.role);
    FrameReader::Status status;
    feed_bytewise(reader, c.wire, &status);
    CHECK(status == FrameReader::Status::kError);
    CHECK(reader.error_code() == c.code);
    CHECK_FALSE(reader.error_reason().empty());
    Message m;
    CHECK(reader.next(&m) == FrameReader::Status::kError);  // stays failed
  }
}

TEST_CASE("a message over the limit fails with 1009 before its payload arrives", "[ws_frame]") {
  FrameReader server(Role::kServer, 100);
  std::string wire = encode_frame(Opcode::kText, std::string(101, 'a'), true, kKey);
  server.feed(wire.substr(0, 8));  // header + mask only
  Message m;
  CHECK(server.next(&m) == FrameReader::Status::kError);
  CHECK(server.error_code() == kCloseMessageTooBig);

  FrameReader fragments(Role::kServer, 100);
  std::string two;
  append_frame(&two, Opcode::kText, std::string(60, 'a'), false, kKey);
  append_frame(&two, Opcode::kContinuation, std::string(60, 'a'), true, kKey);
  fragments.feed(two);
  CHECK(fragments.next(&m) == FrameReader::Status::kError);
  CHECK(fragments.error_code() == kCloseMessageTooBig);

  FrameReader exact(Role::kServer, 100);
  exact.feed(encode_frame(Opcode::kText, std::string(100, 'a'), true, kKey));
  CHECK(exact.next(&m) == FrameReader::Status::kMessage);
}

TEST_CASE("close payloads: code and reason round-trip, reason cut on a character boundary", "[ws_frame]") {
  uint16_t code = 0;
  std::string reason;
  REQUIRE(parse_close_payload(close_payload(1013, "try again later"), &code, &reason));
  CHECK(code == 1013);
  CHECK(reason == "try again later");

  REQUIRE(parse_close_payload("", &code, &reason));
  CHECK(code == kCloseNoStatus);

  std::string long_reason;
  for (int i = 0; i < 100; ++i) long_reason += "\xC3\xA9";  // 200 bytes of é
  std::string payload = close_payload(1000, long_reason);
  CHECK(payload.size() <= kMaxControlPayload);
  REQUIRE(parse_close_payload(payload, &code, &reason));
  CHECK(reason.size() == 122);  // 61 whole characters

  CHECK(encode_close(1001, "bye") == std::string("\x88\x05\x03\xE9" "bye", 7));
}

TEST_CASE("close codes have a meaning for reports", "[ws_frame]") {
  CHECK(std::string(close_code_meaning(1006)).find("without a close frame") != std::string::npos);
  CHECK(std::string(close_code_meaning(1013)).find("try again later") != std::string::npos);
  CHECK(std::string(close_code_meaning(4001)).find("application") != std::string::npos);
}
