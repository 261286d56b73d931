// SPDX-License-Identifier: Apache-2.0
// The HTTP request head as ws-relay's loop takes it from a socket:
// find_head_end, parse_request_head, then the upgrade checks, the Origin
// and token policies, and the reply it would send. Checks: nothing throws;
// a head is found only at a "\r\n\r\n"; a parsed request has a path that
// starts with '/'; a refusal is a 4xx whose header section has no stray CR
// or LF (a value from the request must not be able to add a header), with a
// Content-Length that matches its body.
// Control byte: bit 0 allows any origin, bit 1 sets a token.
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "smws/net/handshake.h"

namespace {

void check_reply(const smws::net::HttpReply& reply, bool head_only) {
  std::string wire = smws::net::serialize_reply(reply, head_only);
  FUZZ_CHECK(wire.rfind("HTTP/1.1 " + std::to_string(reply.status) + " ", 0) == 0);
  size_t end = wire.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string::npos);
  std::string_view headers(wire.data(), end + 2);
  size_t content_length = std::string::npos;
  for (size_t pos = 0; pos < headers.size();) {
    size_t eol = headers.find("\r\n", pos);
    FUZZ_CHECK(eol != std::string_view::npos);
    std::string_view line = headers.substr(pos, eol - pos);
    FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos);
    if (pos > 0) FUZZ_CHECK(line.find(": ") != std::string_view::npos);
    if (line.rfind("Content-Length: ", 0) == 0) content_length = std::stoul(std::string(line.substr(16)));
    pos = eol + 2;
  }
  FUZZ_CHECK(content_length == reply.body.size());
  FUZZ_CHECK(wire.size() == end + 4 + (head_only ? 0 : reply.body.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const uint8_t flags = input.byte();
  std::string_view bytes = input.rest();
  if (bytes.size() > smws::net::kMaxRequestHead) return 0;  // the loop answers 431 first

  size_t end = smws::net::find_head_end(bytes);
  if (end == std::string_view::npos) {
    FUZZ_CHECK(bytes.find("\r\n\r\n") == std::string_view::npos);
    return 0;
  }
  FUZZ_CHECK(end >= 4 && end <= bytes.size() && bytes.substr(end - 4, 4) == "\r\n\r\n");
  std::string error;
  auto request = smws::net::parse_request_head(bytes.substr(0, end), &error);
  if (!request) {
    FUZZ_CHECK(!error.empty());
    check_reply(smws::net::text_reply(400, error), false);
    return 0;
  }
  FUZZ_CHECK(!request->target.empty() && request->target[0] == '/');
  request->peer = "127.0.0.1:1";
  (void)request->query_param("since");
  std::vector<std::string> allowed;
  if (flags & 1) allowed.push_back("*");
  if (flags & 2) allowed.push_back("http://localhost:5173");
  const bool origin_ok = smws::net::origin_allowed(*request, allowed);
  if (flags & 1) FUZZ_CHECK(origin_ok);
  const std::string token = (flags & 4) ? "s3cret" : "";
  const bool token_ok = smws::net::token_ok(*request, token);
  if (token.empty()) FUZZ_CHECK(token_ok);

  if (smws::net::is_upgrade_request(*request)) {
    if (auto refusal = smws::net::check_upgrade(*request)) {
      FUZZ_CHECK(refusal->status >= 400 && refusal->status < 500);
      check_reply(*refusal, request->method == "HEAD");
    } else {
      const std::string* key = request->header("sec-websocket-key");
      FUZZ_CHECK(key != nullptr);
      std::string response = smws::net::switching_protocols_response(*key);
      FUZZ_CHECK(response.rfind("HTTP/1.1 101 ", 0) == 0);
      FUZZ_CHECK(response.find(smws::net::websocket_accept_key(*key)) != std::string::npos);
    }
  }
  return 0;
}
