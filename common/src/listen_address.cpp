// SPDX-License-Identifier: Apache-2.0
#include "smws/listen_address.h"

#include "smws/protocol.h"

namespace smws {

Status parse_listen(std::string_view text, ListenAddress* out) {
  auto bad = [] {
    return Status::Error(Status::kUsage, std::string("expected HOST:PORT, e.g. ") +
                                             protocol::kDefaultListen);
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad();
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad();
  }
  unsigned long n = std::stoul(std::string(port));
  if (n > 65535) return bad();
  out->host = host.empty() ? "0.0.0.0" : std::string(host);
  out->port = static_cast<uint16_t>(n);
  return Status::Ok();
}

}  // namespace smws
