// SPDX-License-Identifier: Apache-2.0
// The Lua scripts as sent with EVAL, from the embedded files (redis_scripts.h).
#include "smws/redis_scripts.h"

#include <cstdlib>

#include "smws/log.h"

namespace smws::redis {
namespace {

std::string script(std::string_view name) {
  const lua::Asset* asset = lua::find_asset(name);
  if (!asset) {
    // A build that lost a file: nothing could work; say which.
    log::error("internal: Lua script " + std::string(name) + " is not embedded");
    std::abort();
  }
  return strip_lua_comments(asset->bytes);
}

}  // namespace

std::string strip_lua_comments(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    size_t first = line.find_first_not_of(" \t\r");
    const bool keep = first != std::string_view::npos && line.substr(first, 2) != "--";
    if (keep) {
      out.append(line);
      out.push_back('\n');
    }
    pos = end + 1;
  }
  return out;
}

const std::string& append_lua() {
  static const std::string text = script("slowest.lua") + script("append.lua");
  return text;
}

const std::string& report_lua() {
  static const std::string text = script("slowest.lua") + script("report.lua");
  return text;
}

const std::string& decide_lua() {
  static const std::string text = script("decide.lua");
  return text;
}

const std::string& load_lua() {
  static const std::string text = script("load.lua");
  return text;
}

}  // namespace smws::redis
