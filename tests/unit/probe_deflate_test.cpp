// SPDX-License-Identifier: Apache-2.0
// permessage-deflate on the probe's side (smws/net/permessage_deflate.h) and
// the frame reader's RSV1 rule (smws/ws_frame.h): what a server that forces
// compression sends is inflated, and only what RFC 7692 allows is accepted.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <string>

#include "smws/net/permessage_deflate.h"
#include "smws/ws_frame.h"

using namespace smws;

namespace {

// One message as a server compresses it (RFC 7692 §7.2.1): raw DEFLATE,
// sync-flushed, the trailing 00 00 ff ff removed. `z` carries the context
// across messages (context takeover) when reused.
std::string deflate_message(z_stream& z, const std::string& text) {
  std::string out(text.size() + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
  out.resize(out.size() - z.avail_out);
  REQUIRE(out.size() >= 4);
  REQUIRE(out.substr(out.size() - 4) == std::string("\x00\x00\xff\xff", 4));
  out.resize(out.size() - 4);
  return out;
}

struct Deflater {
  z_stream z{};
  Deflater() { REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK); }
  ~Deflater() { deflateEnd(&z); }
};

// A server frame (unmasked) with RSV1 set.
std::string compressed_frame(ws::Opcode op, const std::string& payload) {
  std::string frame = ws::encode_frame(op, payload);
  frame[0] = static_cast<char>(static_cast<uint8_t>(frame[0]) | 0x40);
  return frame;
}

}  // namespace

TEST_CASE("permessage-deflate parameters are read from the server's extension header", "[probe][deflate]") {
  std::string error;
  auto p = net::parse_permessage_deflate("permessage-deflate", &error);
  REQUIRE(p);
  CHECK_FALSE(p->server_no_context_takeover);
  CHECK(p->server_max_window_bits == 15);
  p = net::parse_permessage_deflate("x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover; "
                                    "server_max_window_bits=\"10\"; client_max_window_bits",
                                    &error);
  REQUIRE(p);
  CHECK(p->server_no_context_takeover);
  CHECK(p->server_max_window_bits == 10);
  CHECK_FALSE(net::parse_permessage_deflate("x-webkit-deflate-frame", &error));
  CHECK_FALSE(net::parse_permessage_deflate("permessage-deflate; server_max_window_bits=99", &error));
  CHECK(error.find("server_max_window_bits") != std::string::npos);
}

TEST_CASE("compressed messages inflate, with and without context takeover", "[probe][deflate]") {
  Deflater d;
  net::Inflater keep({});
  std::string out, error;
  const std::string first = R"({"type":"tick","n":1,"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})";
  const std::string second = R"({"type":"tick","n":2,"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})";
  CHECK(keep.inflate(deflate_message(d.z, first), 1 << 20, &out, &error) == net::Inflater::Result::kOk);
  CHECK(out == first);
  // The second message refers back into the first (context takeover).
  CHECK(keep.inflate(deflate_message(d.z, second), 1 << 20, &out, &error) == net::Inflater::Result::kOk);
  CHECK(out == second);

  Deflater fresh;
  net::DeflateParams own;
  own.server_no_context_takeover = true;
  net::Inflater each(own);
  CHECK(each.inflate(deflate_message(fresh.z, first), 1 << 20, &out, &error) == net::Inflater::Result::kOk);
  CHECK(out == first);
}

TEST_CASE("an inflated message larger than the limit fails as too big, not as a huge allocation", "[probe][deflate]") {
  Deflater d;
  net::Inflater inflater({});
  std::string out, error;
  const std::string bomb(1 << 20, 'a');  // 1 MiB of 'a' compresses to about a kilobyte
  const std::string compressed = deflate_message(d.z, bomb);
  CHECK(compressed.size() < 8192);
  CHECK(inflater.inflate(compressed, 64 * 1024, &out, &error) == net::Inflater::Result::kTooBig);
  CHECK(out.size() <= 64 * 1024);
  CHECK(error.find("limit") != std::string::npos);
}

TEST_CASE("corrupt compressed data is reported, not crashed on", "[probe][deflate]") {
  net::Inflater inflater({});
  std::string out, error;
  CHECK(inflater.inflate(std::string("\xff\xff\xff\xff garbage", 12), 1 << 20, &out, &error) ==
        net::Inflater::Result::kCorrupt);
  CHECK(error.find("corrupt") != std::string::npos);
}

TEST_CASE("the frame reader takes RSV1 on a data message only when compression was negotiated", "[probe][deflate]") {
  Deflater d;
  const std::string frame = compressed_frame(ws::Opcode::kText, deflate_message(d.z, "hello"));
  ws::Message m;

  ws::FrameReader strict(ws::Role::kClient);
  strict.feed(frame);
  CHECK(strict.next(&m) == ws::FrameReader::Status::kError);
  CHECK(strict.error_code() == 1002);

  ws::FrameReader lenient(ws::Role::kClient);
  lenient.allow_compressed(true);
  lenient.feed(frame);
  REQUIRE(lenient.next(&m) == ws::FrameReader::Status::kMessage);
  CHECK(m.compressed);  // payload still compressed: not UTF-8-checked by the reader
  lenient.feed(ws::encode_frame(ws::Opcode::kText, "plain"));
  REQUIRE(lenient.next(&m) == ws::FrameReader::Status::kMessage);
  CHECK_FALSE(m.compressed);
  CHECK(m.payload == "plain");

  ws::FrameReader control(ws::Role::kClient);
  control.allow_compressed(true);
  control.feed(compressed_frame(ws::Opcode::kPing, "x"));
  CHECK(control.next(&m) == ws::FrameReader::Status::kError);
  CHECK(control.error_reason().find("RSV1") != std::string::npos);

  ws::FrameReader rsv2(ws::Role::kClient);
  rsv2.allow_compressed(true);
  std::string bad = ws::encode_frame(ws::Opcode::kText, "x");
  bad[0] = static_cast<char>(static_cast<uint8_t>(bad[0]) | 0x20);
  rsv2.feed(bad);
  CHECK(rsv2.next(&m) == ws::FrameReader::Status::kError);
}

TEST_CASE("a fragmented compressed message keeps RSV1 from its first frame only", "[probe][deflate]") {
  Deflater d;
  const std::string payload = deflate_message(d.z, "fragmented hello");
  std::string first = ws::encode_frame(ws::Opcode::kText, payload.substr(0, 4), false);
  first[0] = static_cast<char>(static_cast<uint8_t>(first[0]) | 0x40);
  const std::string rest = ws::encode_frame(ws::Opcode::kContinuation, payload.substr(4), true);
  ws::FrameReader reader(ws::Role::kClient);
  reader.allow_compressed(true);
  reader.feed(first + rest);
  ws::Message m;
  REQUIRE(reader.next(&m) == ws::FrameReader::Status::kMessage);
  CHECK(m.compressed);
  net::Inflater inflater({});
  std::string out, error;
  CHECK(inflater.inflate(m.payload, 1 << 20, &out, &error) == net::Inflater::Result::kOk);
  CHECK(out == "fragmented hello");
}
