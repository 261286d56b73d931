// SPDX-License-Identifier: Apache-2.0
// Events: JSON objects with a non-empty string "type" (SPEC "Events").
//
// Two paths:
//  - the hot path (sm-send stdin mode, sm-listen) never builds a DOM: scan()
//    runs nlohmann's SAX parser over the bytes to check the shape and note the
//    top-level keys that matter, and the bytes are forwarded as received, with
//    "timestamp"/"reply_to" spliced in before the closing brace when needed;
//  - the argument path (sm-send TYPE FIELD...) builds an ordered DOM from the
//    HTTPie-style field grammar, once per process.
// Pure functions, no I/O: every caller owns its buffers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smws/protocol.h"

namespace smws::event {

// One event per datagram, at most this many bytes by default (--max-size);
// the reason for the figure is in protocol.h.
inline constexpr size_t kDefaultMaxSize = protocol::kDefaultMaxEventSize;

// What scan() learnt about a candidate event. Reuse one Scan across calls on a
// hot path: its strings keep their capacity.
struct Scan {
  bool valid = false;
  std::string error;            // why it is not an event, when !valid
  std::string type;             // the top-level "type", when valid
  bool has_timestamp = false;   // a top-level "timestamp" key is present
  bool has_reply_to = false;    // a top-level "reply_to" key is present
  bool has_sender = false;      // a top-level "sender" key is present (sm-listen replaces it)
};

// Where some top-level members lie in the scanned bytes, for a caller that
// reuses the bytes without building a DOM (ws-relay tables a state_change
// from them). Only scan()'s fast path can fill it: when `settled` is false
// (the event went to the nlohmann reference, valid or not) nothing else here
// means anything, and the caller parses the bytes itself if it must.
struct Members {
  bool settled = false;  // the fast path settled the event; the rest is filled
  bool has_seq = false;  // a top-level "seq" key is present
  // The raw JSON text of each top-level value (a view into the scanned bytes,
  // "\"w-1\"" for the string w-1, "{...}" for an object): empty when the key
  // is absent, the last of duplicate keys as in a DOM. Escapes are left as
  // written: a string value holding a backslash is not decoded here.
  std::string_view machine_id, state, previous_state, timestamp, data;
  // The bytes hold no number with an exponent or of 40+ characters, no
  // escaped UTF-16 surrogate (backslash-u D800-DFFF) and no containers
  // nested deeper than kPlainMaxDepth. ws-relay tables raw members only from
  // plain events and tables the rest from a DOM, so the snapshot bytes of
  // those stay the DOM's serialization (1e5 shown as 100000.0), as they were
  // before the relay shared this scanner.
  bool plain = false;
};
inline constexpr int kPlainMaxDepth = 128;

// Checks that bytes hold exactly one JSON object (surrounding whitespace
// allowed) with a non-empty string "type" at the top level, and valid UTF-8.
// Builds no DOM. Numbers outside double range (1e400) are refused, as
// nlohmann's parser refuses them. Returns out->valid.
//
// One allocation-free pass settles the common event (~0.1 us per 100 bytes);
// only what it cannot settle (invalid input, escapes in top-level keys or in
// the type, nesting deeper than 256) runs through scan_reference, which
// decides and words the error. With `members`, the pass also reports them
// (see Members; views into `bytes`, valid while they are).
bool scan(std::string_view bytes, Scan* out, Members* members = nullptr);

// The same check through nlohmann's SAX parser: the reference scan() must
// agree with, and what words scan()'s error messages. Slower (~10x).
bool scan_reference(std::string_view bytes, Scan* out);

// Bytes without leading/trailing JSON whitespace (space, tab, CR, LF).
std::string_view trim(std::string_view bytes);

// Seconds since the epoch with microseconds, as a JSON number: "1729845678.123456".
std::string now_timestamp();
// The same into buf without allocating (hot path); returns its length.
size_t format_now_timestamp(char (&buf)[32]);

// Appends `event` to *out with `,"key":json_value` inserted before its closing
// brace. Pre: event is trimmed and scan()-valid (so it ends in '}' and has at
// least one member), key needs no JSON escaping, json_value is valid JSON.
void append_with_field(std::string* out, std::string_view event, std::string_view key,
                       std::string_view json_value);

// A JSON string literal for s (quotes included), escaped as JSON requires.
std::string json_quote(std::string_view s);

// Appends a scan()-valid event as one NDJSON line body (no '\n'): surrounding
// whitespace trimmed and every raw CR/LF dropped. In valid JSON a raw CR or LF
// can only be whitespace between tokens (inside strings they must be escaped),
// so dropping them keeps the event byte-identical otherwise.
void append_single_line(std::string* out, std::string_view event);

// Replaces (or adds) a top-level member through a DOM: the slow path, used
// only when the event already has the key (e.g. a stale "reply_to").
// Returns false with *error set when event is not a JSON object.
bool set_member(std::string* event, const std::string& key, std::string_view json_value,
                std::string* error);

// One FIELD argument of sm-send, in HTTPie's grammar:
//   key=value    "value" (a string) into "data"
//   key:=json    raw JSON into "data" (progress:=50, tags:='["a"]')
//   @key=value   a top-level string member
//   @key:=json   a top-level raw JSON member
// The separator is whichever of '=' and ':=' comes first; a backslash escapes
// '=', ':' and '\' in the key (a\=b=c sets key "a=b").
struct Field {
  bool top_level = false;
  bool raw_json = false;
  std::string key;
  std::string value;  // the text after the separator
};

// Parses one FIELD. Returns false with *error naming the problem (no
// separator, empty key, ':=' value that is not JSON).
bool parse_field(std::string_view arg, Field* out, std::string* error);

// The arguments of `sm-send TYPE [FIELD ...]`.
struct BuildSpec {
  std::string type;
  std::optional<std::string> machine_id;      // -m/--machine
  std::optional<std::string> state;           // --state
  std::optional<std::string> previous_state;  // --previous
  std::vector<std::string> fields;
};

// Builds the event as compact JSON, members in this order: type, machine_id,
// state, previous_state, top-level @fields (in argument order), data. Later
// fields replace earlier ones with the same key; key=value fields need "data"
// to be an object (an @data:=... that is not one is an error). No timestamp
// is added here (see append_with_field). Returns false with *error set.
bool build(const BuildSpec& spec, std::string* out, std::string* error);

// Bytes made safe for a one-line diagnostic: at most max_bytes of them, with
// control characters and invalid UTF-8 shown as \xNN, "…" when cut.
std::string excerpt(std::string_view bytes, size_t max_bytes = 60);

}  // namespace smws::event
