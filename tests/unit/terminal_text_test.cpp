// smws/terminal_text.h: network text made safe to write to a terminal.
#include <catch2/catch.hpp>
#include <string>

#include "smws/terminal_text.h"

using smws::terminal_safe;
using smws::terminal_safe_line;

TEST_CASE("terminal_safe keeps printable text, tab, newline and other UTF-8", "[terminal_text]") {
  CHECK(terminal_safe("") == "");
  CHECK(terminal_safe("deploy to prod\tnow\n") == "deploy to prod\tnow\n");
  CHECK(terminal_safe("caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x9A\x80") == "caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x9A\x80");
  CHECK(terminal_safe("a\\x1b") == "a\\x1b");
}

TEST_CASE("terminal_safe escapes C0 controls, ESC and DEL", "[terminal_text]") {
  CHECK(terminal_safe("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07");
  CHECK(terminal_safe("\x1b[1A\x1b[2K") == "\\x1b[1A\\x1b[2K");
  CHECK(terminal_safe("line\rover") == "line\\rover");
  CHECK(terminal_safe(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(terminal_safe("\x7f\x08") == "\\x7f\\x08");
  // OSC 52: a clipboard write
  CHECK(terminal_safe("\x1b]52;c;cm0gLXJmIH4K\x1b\\") == "\\x1b]52;c;cm0gLXJmIH4K\\x1b\\");
}

TEST_CASE("terminal_safe escapes C1 controls and bidi marks by code point", "[terminal_text]") {
  CHECK(terminal_safe("\xC2\x9B" "31m") == "\\u009b31m");  // CSI as U+009B
  CHECK(terminal_safe("\xC2\x80\xC2\x9F\xC2\xA0") == "\\u0080\\u009f\xC2\xA0");
  CHECK(terminal_safe("txt.\xE2\x80\xAE" "exe") == "txt.\\u202eexe");
  CHECK(terminal_safe("\xE2\x80\xAA\xE2\x80\xAD") == "\\u202a\\u202d");
  CHECK(terminal_safe("\xE2\x81\xA6\xE2\x81\xA9") == "\\u2066\\u2069");
  CHECK(terminal_safe("\xE2\x80\x8E\xE2\x80\x8F") == "\\u200e\\u200f");
  CHECK(terminal_safe("\xE2\x80\xAF\xE2\x81\xA5") == "\xE2\x80\xAF\xE2\x81\xA5");  // neighbours kept
}

TEST_CASE("terminal_safe escapes invalid UTF-8 byte by byte", "[terminal_text]") {
  CHECK(terminal_safe("\xFF") == "\\xff");
  CHECK(terminal_safe("a\xC3") == "a\\xc3");                  // truncated
  CHECK(terminal_safe("\xC0\xAF") == "\\xc0\\xaf");            // overlong '/'
  CHECK(terminal_safe("\xED\xA0\x80") == "\\xed\\xa0\\x80");   // surrogate
  CHECK(terminal_safe("\xF4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  CHECK(terminal_safe("\xE2\x80" "x") == "\\xe2\\x80x");        // resynchronises
  CHECK(terminal_safe("\x9B") == "\\x9b");                     // a raw 8-bit CSI
}

TEST_CASE("terminal_safe_line escapes newline too", "[terminal_text]") {
  CHECK(terminal_safe_line("a\nb\tc") == "a\\nb\tc");
  CHECK(terminal_safe_line("\x1b[2K") == "\\x1b[2K");
}

TEST_CASE("redact_url_token hides the value of the token parameter and nothing else", "[terminal_text]") {
  using smws::redact_url_token;
  const std::string dots = "\xE2\x80\xA6";
  CHECK(redact_url_token("ws://h:1/ws/events") == "ws://h:1/ws/events");
  CHECK(redact_url_token("ws://h/ws?token=s3cret") == "ws://h/ws?token=" + dots);
  CHECK(redact_url_token("wss://h/ws?a=1&token=s3cret&b=2#f") == "wss://h/ws?a=1&token=" + dots + "&b=2#f");
  CHECK(redact_url_token("ws://h/ws?token=a&token=b") == "ws://h/ws?token=" + dots + "&token=" + dots);
  CHECK(redact_url_token("ws://h/ws?token=") == "ws://h/ws?token=");
  CHECK(redact_url_token("ws://h/ws?mytoken=x&tokens=y") == "ws://h/ws?mytoken=x&tokens=y");
  CHECK(redact_url_token("ws://h/ws#token=x") == "ws://h/ws#token=x");
  CHECK(redact_url_token("GET /ws?token=s3cret HTTP/1.1") == "GET /ws?token=" + dots + " HTTP/1.1");
}
