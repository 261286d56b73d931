// SPDX-License-Identifier: Apache-2.0
#include "smws/protocol_messages.h"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace smws::protocol {

std::string dropped_message(uint64_t count) {
  return "{\"type\":\"dropped\",\"count\":" + std::to_string(count) + "}";
}

std::string app_ping_message(double wall_seconds) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "{\"type\":\"ping\",\"timestamp\":%.3f}", wall_seconds);
  return buf;
}

std::string error_message(std::string_view text) {
  return nlohmann::json{{"type", "error"}, {"error", text}}.dump();
}

}  // namespace smws::protocol
