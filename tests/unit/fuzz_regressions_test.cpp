// Inputs the fuzzers (tests/fuzz/) found that break a contract in code
// another module owns, pinned here until the owner fixes them. A case tagged
// [!shouldfail] documents a bug that is still there: it passes while the bug
// exists and fails once it is fixed, so whoever fixes it removes the tag (and
// the matching allowance in the fuzz target, named in the case).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "smws/relay_hub.h"

using smws::core::ClientMessage;
using smws::core::RelayHub;

// Found by fuzz_relay_client: "[\u0222" is valid UTF-8, so the codec lets it
// through; nlohmann's parse error quotes the bytes it read ("last read:
// '[\xc8'"), cut in the middle of the character, and error_reply()
// (common/src/relay_hub.cpp) dumps that text, which throws type_error 316.
// ws-relay catches it and answers {"error":"internal error"} instead of the
// parse error. Allowance: relay_client_fuzz.cpp, kKnownErrorReplyThrow.
TEST_CASE("a client message whose parse error quotes half a character gets a JSON error reply",
          "[relay][fuzz][!shouldfail]") {
  ClientMessage m = RelayHub::classify_client_message("[\xc8\xa2");
  CHECK(m.kind == ClientMessage::Kind::kError);
  auto reply = nlohmann::json::parse(m.reply);
  CHECK(reply["type"] == "error");
  CHECK(reply["error"].get<std::string>().rfind("not JSON", 0) == 0);
}
