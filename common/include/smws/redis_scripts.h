// SPDX-License-Identifier: Apache-2.0
// The group's Lua scripts (common/src/redis/scripts/*.lua, what each takes
// and returns is at its top; the keys are in docs/scale-out.md), embedded at
// build time by cmake/embed_assets.cmake like the dashboard's files.
//
// Threads: any. The texts are built once, on first use (a function-local
// static), and never change.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "smws/embedded_asset.h"

namespace smws::redis {

// The scripts as sent with EVAL: the file's code without its whole-line
// comments; append and report start with slowest.lua's SLOWEST function.
const std::string& append_lua();
const std::string& report_lua();
const std::string& decide_lua();
const std::string& load_lua();

// The embedded files themselves (generated: smws_redis_scripts.cpp).
namespace lua {
using Asset = ::smws::EmbeddedAsset;
const Asset* find_asset(std::string_view name);
size_t asset_count();
const Asset& asset_at(size_t i);
}  // namespace lua

// A Lua file's code without its whole-line "--" comments and blank lines
// (they would travel with every EVAL). Pure; exposed for its test.
std::string strip_lua_comments(std::string_view text);

}  // namespace smws::redis
