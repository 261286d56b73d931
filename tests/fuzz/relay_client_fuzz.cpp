// SPDX-License-Identifier: Apache-2.0
// ws-relay's message handling without sockets. A client's text message (the
// codec has already checked it is UTF-8) through
// RelayHub::classify_client_message: refresh and pong are consumed, decision
// and subscribe carry their JSON, anything else that is an object is forwarded to stdout as
// one compact line, and the rest gets an error reply. The same bytes also go
// in as a stdin line (ingest, under --seq with history), and the snapshot a
// new client would get must stay one JSON object.
// Control byte: bit 0 feeds the bytes to ingest() as well.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "smws/relay_hub.h"
#include "smws/utf8.h"

namespace {

using smws::ClientMessage;

void check_client_message(std::string_view text) {
  ClientMessage m = smws::RelayHub::classify_client_message(text);
  switch (m.kind) {
    case ClientMessage::Kind::kRefresh:
    case ClientMessage::Kind::kPong:
    case ClientMessage::Kind::kDecision:
    case ClientMessage::Kind::kSubscribe:
      FUZZ_CHECK(m.json.is_object() && m.json["type"].is_string());
      break;
    case ClientMessage::Kind::kForward: {
      FUZZ_CHECK(m.json.is_object());
      FUZZ_CHECK(!m.line.empty() && m.line.back() == '\n');
      FUZZ_CHECK(m.line.find('\n') == m.line.size() - 1);
      auto again = nlohmann::json::parse(m.line, nullptr, false);
      FUZZ_CHECK(again == m.json);
      break;
    }
    case ClientMessage::Kind::kError: {
      auto reply = nlohmann::json::parse(m.reply, nullptr, false);
      FUZZ_CHECK(reply.is_object() && reply["type"] == "error" && reply["error"].is_string());
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const uint8_t flags = input.byte();
  std::string_view text = input.rest();
  if (smws::is_valid_utf8(text)) check_client_message(text);
  if (flags & 1) {
    smws::HubOptions options;
    options.history = 4;
    options.seq = true;
    options.max_machines = 2;
    smws::RelayHub hub(options);
    // Twice, so the second line updates (or evicts) what the first tabled.
    for (int i = 0; i < 2; ++i) {
      auto r = hub.ingest(text, 1000.0 + i, i + 1);
      if (r.ok()) {
        auto event = nlohmann::json::parse(*r.payload, nullptr, false);
        FUZZ_CHECK(event.is_object() && event["seq"] == r.seq);
      } else if (r.status != smws::IngestResult::Status::kBlank) {
        FUZZ_CHECK(!r.error.empty());
      }
    }
    auto snapshot = nlohmann::json::parse(*hub.snapshot(2000.0), nullptr, false);
    FUZZ_CHECK(snapshot.is_object() && snapshot["type"] == "initial");
    FUZZ_CHECK(snapshot["machines"].size() == hub.machines());
    for (const auto& payload : hub.on_connect(std::nullopt, 2000.0)) {
      FUZZ_CHECK(nlohmann::json::accept(*payload));
    }
  }
  return 0;
}
