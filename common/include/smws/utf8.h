// SPDX-License-Identifier: Apache-2.0
// Strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
// as RFC 6455 requires for text frames and close reasons.
#pragma once

#include <cstddef>
#include <string_view>

namespace smws {

bool is_valid_utf8(std::string_view bytes);

// Incremental form for data that arrives in pieces (fragmented text messages):
// feed() returns false as soon as the bytes so far cannot be valid UTF-8;
// complete() says whether the stream ends on a character boundary.
class Utf8Validator {
 public:
  bool feed(std::string_view bytes);
  bool complete() const { return state_ == 0; }
  void reset() { state_ = 0; }

 private:
  unsigned state_ = 0;  // DFA state; 0 = accept, 1 = reject
};

}  // namespace smws
