// SPDX-License-Identifier: Apache-2.0
// parse_ws_url, the URL every client tool (ws-probe, hitl-approve) takes
// from its user. Checks: a URL that parses has a host, a port in 1..65535,
// a target that starts with '/' and holds no fragment, a scheme that decides
// TLS, and the text as given; one that does not parse says why.
#include <cctype>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "smws/net/ws_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  auto url = smws::net::parse_ws_url(text, &error);
  if (!url) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  FUZZ_CHECK(!url->host.empty());
  FUZZ_CHECK(url->port >= 1);
  FUZZ_CHECK(!url->target.empty() && url->target[0] == '/');
  FUZZ_CHECK(url->target.find('#') == std::string::npos);
  FUZZ_CHECK(url->text == text);
  std::string scheme;
  for (char c : text.substr(0, text.find("://"))) scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  FUZZ_CHECK(url->tls == (scheme == "wss" || scheme == "https"));
  return 0;
}
