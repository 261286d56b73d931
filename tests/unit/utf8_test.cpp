// SPDX-License-Identifier: Apache-2.0
#include "smws/utf8.h"

#include <catch2/catch.hpp>

#include <string>

using smws::is_valid_utf8;
using smws::Utf8Validator;

TEST_CASE("ASCII and well-formed multibyte text is valid UTF-8", "[utf8]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain ascii that is longer than eight bytes"));
  CHECK(is_valid_utf8("h\xC3\xA9llo"));                 // é
  CHECK(is_valid_utf8("\xE2\x82\xAC"));                 // €
  CHECK(is_valid_utf8("\xF0\x9F\x98\x80 smile"));       // U+1F600
  CHECK(is_valid_utf8("\xF4\x8F\xBF\xBF"));             // U+10FFFF
}

TEST_CASE("overlongs, surrogates, out-of-range and truncated sequences are rejected", "[utf8]") {
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));               // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xE0\x80\xAF"));           // overlong
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));           // U+D800 surrogate
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));       // > U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xFF"));
  CHECK_FALSE(is_valid_utf8("abc\xE2\x82"));            // truncated at the end
  CHECK_FALSE(is_valid_utf8("abcdefgh\x80"));           // lone continuation after fast path
}

TEST_CASE("incremental validation accepts a character split across pieces", "[utf8]") {
  Utf8Validator v;
  CHECK(v.feed("ok \xE2"));
  CHECK_FALSE(v.complete());
  CHECK(v.feed("\x82"));
  CHECK(v.feed("\xAC"));
  CHECK(v.complete());
  CHECK_FALSE(v.feed("\xC0"));
  CHECK_FALSE(v.feed("a"));  // stays rejected
}
