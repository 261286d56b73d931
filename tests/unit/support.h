// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the unit tests (tests/unit/*.cpp).
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <system_error>

namespace smws::test {

// A fresh directory under /tmp, removed with everything in it when the
// TempDir goes out of scope. The path is short on purpose: a Unix socket path
// must fit in sockaddr_un's 108 bytes.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/smws-ut-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;  // a test that failed half-way may leave anything
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name; the file itself is not created.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace smws::test
