// Text that came from the network, made safe to write to a terminal: a
// peer must not be able to move the cursor, erase lines, set the window
// title, write the clipboard (OSC 52) or reorder what is shown (bidi
// overrides) just by putting bytes into a field hitl-approve or ws-probe
// displays.
#pragma once

#include <string>
#include <string_view>

namespace smws {

// bytes with every character a terminal would act on rather than show
// replaced by a visible escape:
//   C0 controls other than tab and newline, and DEL   -> \x1b, \r, \x7f ...
//   C1 controls U+0080-U+009F                         -> \u009b
//   bidi marks, embeddings, overrides and isolates
//   (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069)    -> \u202e
//   each byte of invalid UTF-8                        -> \xff
// Everything else (printable ASCII, tab, newline, other valid UTF-8) is
// kept as it was. Meant for display only, not as a reversible encoding: a
// literal backslash is left alone, so "\x1b" typed by the peer looks the
// same as an escaped ESC, which is harmless.
std::string terminal_safe(std::string_view bytes);

// The same, for a single line: newline is escaped too (\n), so a field
// cannot start a line of its own that looks like the tool's output.
std::string terminal_safe_line(std::string_view bytes);

// url (or an HTTP request line holding one) with the value of every `token`
// query parameter replaced by "…" (U+2026), so a report, a log line or a
// terminal's scrollback never holds the bearer token: "ws://h/ws?token=s3&x=1"
// becomes "ws://h/ws?token=…&x=1". A value ends at '&', '#', a space or the
// end; an empty value is left empty. Nothing else is changed.
std::string redact_url_token(std::string_view url);

}  // namespace smws
