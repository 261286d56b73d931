// SPDX-License-Identifier: Apache-2.0
// One file embedded into the binary at build time by cmake/embed_assets.cmake
// (the dashboard's web assets, smws::redis's Lua scripts). Plain data: no
// allocation, any thread.
#pragma once

#include <string_view>

namespace smws {

struct EmbeddedAsset {
  std::string_view name;          // file name in its directory, e.g. "dashboard.js"
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  std::string_view bytes;         // the file's content, exactly
  std::string_view etag;          // quoted: "\"<16 hex digits of its SHA-256>\""
};

}  // namespace smws
