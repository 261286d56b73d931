// SPDX-License-Identifier: Apache-2.0
// What every fuzz target shares: FUZZ_CHECK, an invariant that aborts with
// the failing expression (libFuzzer then saves the input as crash-*), and a
// cursor that takes a few control bytes off the front of an input.
// Targets are built two ways (tests/fuzz/CMakeLists.txt): with libFuzzer
// (clang, `make fuzz`) and, in the test build, linked with replay_main.cpp
// to replay their corpus under ctest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace smws::fuzz {

// Control bytes first, the rest is the payload under test. Reading past the
// end yields 0, so every input is usable.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}
  uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return static_cast<uint8_t>(*p_++);
  }
  std::string_view rest() const { return {p_, n_}; }

 private:
  const char* p_;
  size_t n_;
};

}  // namespace smws::fuzz
