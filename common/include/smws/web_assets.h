// SPDX-License-Identifier: Apache-2.0
// The dashboard's web assets (web/dashboard/*), embedded at build time.
//
// cmake/embed_assets.cmake turns each file into bytes in a generated source
// (library smws::web_assets), so ws-relay serves the page from memory with no
// files on disk and no network. This header is the lookup; which asset is
// served at which URL, behind which checks, is the HTTP glue's business
// (smws/net/dashboard.h). Plain data: no POCO, no allocation, any thread.
#pragma once

#include <cstddef>
#include <string_view>

#include "smws/embedded_asset.h"

namespace smws::web {

using Asset = ::smws::EmbeddedAsset;  // name, content_type, bytes, etag

// The asset with that file name, or nullptr.
const Asset* find_asset(std::string_view name);

// Every asset, in the order the build listed them.
size_t asset_count();
const Asset& asset_at(size_t i);

}  // namespace smws::web
