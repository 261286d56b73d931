// SPDX-License-Identifier: Apache-2.0
#include "smws/event.h"

#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "smws/utf8.h"

namespace smws::event {
namespace {

using Json = nlohmann::json;

// SAX handler for scan(): tracks nesting depth and looks only at the members
// of the top-level object. Duck-typed (sax_parse is a template), so no
// virtual calls. Aborts as soon as the top-level value is not an object.
class ScanHandler {
 public:
  explicit ScanHandler(Scan* out) : out_(out) {}

  bool null() { return value(Kind::kOther); }
  bool boolean(bool) { return value(Kind::kOther); }
  bool number_integer(Json::number_integer_t) { return value(Kind::kOther); }
  bool number_unsigned(Json::number_unsigned_t) { return value(Kind::kOther); }
  bool number_float(Json::number_float_t, const std::string&) { return value(Kind::kOther); }
  bool binary(Json::binary_t&) { return value(Kind::kOther); }
  bool string(std::string& s) {
    if (depth_ == 1 && pending_ == Key::kType) out_->type.assign(s);
    return value(Kind::kString);
  }
  bool start_object(size_t) {
    if (depth_ == 0 && seen_top_) return not_object();
    if (depth_ == 0) seen_top_ = true;
    if (depth_ > 0 && !value(Kind::kOther)) return false;
    ++depth_;
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(size_t) {
    if (depth_ == 0) return not_object();
    if (!value(Kind::kOther)) return false;
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(std::string& k) {
    if (depth_ != 1) return true;
    if (k == "type") {
      pending_ = Key::kType;
    } else if (k == "timestamp") {
      pending_ = Key::kOther;
      out_->has_timestamp = true;
    } else if (k == "reply_to") {
      pending_ = Key::kOther;
      out_->has_reply_to = true;
    } else if (k == "sender") {
      pending_ = Key::kOther;
      out_->has_sender = true;
    } else {
      pending_ = Key::kOther;
    }
    return true;
  }
  template <class Exception>
  bool parse_error(size_t, const std::string&, const Exception& ex) {
    parse_error_ = ex.what();
    return false;
  }

  bool is_not_object() const { return not_object_; }
  bool type_is_string() const { return type_kind_ == Kind::kString; }
  bool type_seen() const { return type_kind_ != Kind::kNone; }
  const std::string& parse_error_text() const { return parse_error_; }

 private:
  enum class Key { kNone, kType, kOther };
  enum class Kind { kNone, kString, kOther };

  // Every value event passes here: a scalar at the top level means "not an
  // object"; a value directly under the top-level object may be the type.
  bool value(Kind kind) {
    if (depth_ == 0) return not_object();
    if (depth_ == 1 && pending_ == Key::kType) {
      type_kind_ = kind;  // the last "type" wins, as in a DOM
      if (kind != Kind::kString) out_->type.clear();
    }
    if (depth_ == 1) pending_ = Key::kNone;
    return true;
  }
  bool not_object() {
    not_object_ = true;
    return false;
  }

  Scan* out_;
  int depth_ = 0;
  bool seen_top_ = false;
  bool not_object_ = false;
  Key pending_ = Key::kNone;
  Kind type_kind_ = Kind::kNone;
  std::string parse_error_;
};

// nlohmann's messages start with "[json.exception.parse_error.101] "; the tag
// means nothing to a user.
std::string strip_exception_tag(const std::string& what) {
  if (!what.empty() && what[0] == '[') {
    auto end = what.find("] ");
    if (end != std::string::npos) return excerpt(what.substr(end + 2), 200);
  }
  return excerpt(what, 200);
}

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Unescapes HTTPie's backslash escapes in a field key.
std::string unescape_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '\\' && i + 1 < key.size() &&
        (key[i + 1] == '=' || key[i + 1] == ':' || key[i + 1] == '\\' || key[i + 1] == '@')) {
      ++i;
    }
    out += key[i];
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// The fast path. Profiling sm-send | sm-listen showed nlohmann's SAX lexer at
// ~1 us per 120-byte event on each side, the largest user-space cost of the
// pipeline (it builds a std::string per token). This validator walks the
// bytes once, with the same acceptance rules as nlohmann (RFC 8259 grammar,
// strict UTF-8, \u escapes with paired surrogates, numbers that fit a
// double), at ~0.1 us per event. It answers only "certainly a valid event";
// anything else (invalid input, or a rare shape it does not handle: escapes
// in top-level keys or in the type, nesting deeper than kMaxDepth) goes to
// the nlohmann scan, which is the reference and words the error. With
// Members it also notes where the top-level values ws-relay tables lie (its
// own scanner once did this, at the same cost: ~0.1 us per 100-byte event
// in RelayHub::ingest, a state_change tabled in ~0.33 us against 4.5 us
// through a DOM).
// tests/unit/event_test.cpp checks both agree on mutated and random inputs,
// members included.
namespace fast {

constexpr int kMaxDepth = 256;

inline bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

inline void skip_space(const unsigned char*& p, const unsigned char* e) {
  while (p < e && is_space(*p)) ++p;
}

inline int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline bool read_hex4(const unsigned char*& p, const unsigned char* e, unsigned* out) {
  if (e - p < 4) return false;
  unsigned v = 0;
  for (int i = 0; i < 4; ++i) {
    int h = hex_value(p[i]);
    if (h < 0) return false;
    v = (v << 4) | static_cast<unsigned>(h);
  }
  p += 4;
  *out = v;
  return true;
}

// One UTF-8 sequence starting at a byte >= 0x80 (RFC 3629 table 3-7).
inline bool utf8_sequence(const unsigned char*& p, const unsigned char* e) {
  unsigned char c = *p;
  auto cont = [&](const unsigned char* q, unsigned char lo, unsigned char hi) {
    return q < e && *q >= lo && *q <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(p + 1, 0x80, 0xBF)) return false;
    p += 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    if (!cont(p + 1, lo, hi) || !cont(p + 2, 0x80, 0xBF)) return false;
    p += 3;
  } else if (c >= 0xF0 && c <= 0xF4) {
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (!cont(p + 1, lo, hi) || !cont(p + 2, 0x80, 0xBF) || !cont(p + 3, 0x80, 0xBF)) return false;
    p += 4;
  } else {
    return false;
  }
  return true;
}

// Bit 7 of a byte of the result is set where w holds a byte that a string
// token cannot take as it is: a quote, a backslash, a control character, or
// one of a UTF-8 sequence. Every such byte is flagged; a borrow may flag a
// plain byte next to one, never a byte of a word without any.
inline uint64_t special_bytes(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  auto below = [](uint64_t x, uint64_t n) { return (x - kOnes * n) & ~x & kHigh; };
  return below(w, 0x20) | below(w ^ (kOnes * '"'), 1) | below(w ^ (kOnes * '\\'), 1) |
         (w & kHigh);
}

// A string token; p is on the opening quote. On success p is past the
// closing quote, [*begin, *end) are the raw contents and *escaped says
// whether they hold a backslash escape; an escaped surrogate clears *plain.
// Forced inline: left to itself GCC calls it out of line, which costs
// RelayHub::ingest ~10% on a state_change.
[[gnu::always_inline]] inline bool string(const unsigned char*& p, const unsigned char* e,
                                          const unsigned char** begin, const unsigned char** end,
                                          bool* escaped, bool* plain) {
  ++p;
  *begin = p;
  *escaped = false;
  while (p < e) {
    // Eight bytes at a time up to the first one that needs a look: the bulk
    // of an event is plain ASCII in strings (~15% off a 100-byte event).
    while (e - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if (uint64_t special = special_bytes(w)) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        p += __builtin_clzll(special) >> 3;
#else
        p += __builtin_ctzll(special) >> 3;
#endif
        break;
      }
      p += 8;
    }
    if (p >= e) break;
    unsigned char c = *p;
    if (c == '"') {
      *end = p++;
      return true;
    }
    if (c < 0x20) return false;
    if (c < 0x80 && c != '\\') {
      ++p;
      continue;
    }
    if (c >= 0x80) {
      if (!utf8_sequence(p, e)) return false;
      continue;
    }
    // A backslash escape.
    *escaped = true;
    if (++p >= e) return false;
    switch (*p++) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        break;
      case 'u': {
        unsigned cp;
        if (!read_hex4(p, e, &cp)) return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a lone low surrogate
        if (cp >= 0xD800 && cp <= 0xDBFF) {                // must pair with a low one
          *plain = false;
          if (e - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
          p += 2;
          unsigned low;
          if (!read_hex4(p, e, &low) || low < 0xDC00 || low > 0xDFFF) return false;
        }
        break;
      }
      default:
        return false;
    }
  }
  return false;
}

// A number token (RFC 8259 grammar). Like nlohmann, refuses one that does not
// fit a double (1e400): those, and very long ones, are checked with strtod.
// One with an exponent or of 40+ characters clears *plain.
inline bool number(const unsigned char*& p, const unsigned char* e, bool* plain) {
  const unsigned char* start = p;
  if (*p == '-') ++p;
  if (p >= e || !is_digit(*p)) return false;
  if (*p == '0') {
    ++p;
  } else {
    while (p < e && is_digit(*p)) ++p;
  }
  bool check_range = p - start > 300;
  if (p < e && *p == '.') {
    ++p;
    if (p >= e || !is_digit(*p)) return false;
    while (p < e && is_digit(*p)) ++p;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < e && (*p == '+' || *p == '-')) ++p;
    if (p >= e || !is_digit(*p)) return false;
    while (p < e && is_digit(*p)) ++p;
    check_range = true;
  }
  if (check_range || p - start >= 40) *plain = false;
  if (check_range) {
    std::string text(reinterpret_cast<const char*>(start), static_cast<size_t>(p - start));
    if (!std::isfinite(std::strtod(text.c_str(), nullptr))) return false;
  }
  return true;
}

inline bool literal(const unsigned char*& p, const unsigned char* e, const char* word, size_t n) {
  if (static_cast<size_t>(e - p) < n || std::memcmp(p, word, n) != 0) return false;
  p += n;
  return true;
}

inline bool key_is(const unsigned char* b, const unsigned char* e, const char* word, size_t n) {
  return static_cast<size_t>(e - b) == n && std::memcmp(b, word, n) == 0;
}

// True only when bytes certainly are a valid event; fills out (and *members,
// when given) then. *members may be left half-filled on false.
bool scan(std::string_view bytes, Scan* out, Members* members) {
  auto p = reinterpret_cast<const unsigned char*>(bytes.data());
  auto e = p + bytes.size();
  char stack[kMaxDepth];  // '{' or '[' per open container
  int depth = 0;
  enum class Key { kNone, kType, kOther } pending = Key::kNone;
  enum class Kind { kNone, kString, kOther } type_kind = Kind::kNone;
  const unsigned char *type_begin = nullptr, *type_end = nullptr;
  bool has_timestamp = false, has_reply_to = false, has_sender = false;
  bool plain = true;
  // With members: where the top-level value being read goes (nullptr: not
  // wanted) and where it starts.
  std::string_view* field = nullptr;
  const unsigned char* value_begin = nullptr;
  auto take = [&](const unsigned char* value_end) {
    *field = std::string_view(reinterpret_cast<const char*>(value_begin),
                              static_cast<size_t>(value_end - value_begin));
  };
  if (members) *members = Members{};

  skip_space(p, e);
  if (p >= e || *p != '{') return false;
  ++p;
  stack[depth++] = '{';
  enum class State { kObjectFirst, kArrayFirst, kMember, kValue, kAfterValue } state =
      State::kObjectFirst;
  for (;;) {
    skip_space(p, e);
    switch (state) {
      case State::kObjectFirst:
        if (p < e && *p == '}') {
          ++p;
          --depth;
          if (depth == 1 && field) take(p);  // a top-level {} value
          state = State::kAfterValue;
          continue;
        }
        state = State::kMember;
        continue;
      case State::kArrayFirst:
        if (p < e && *p == ']') {
          ++p;
          --depth;
          if (depth == 1 && field) take(p);  // a top-level [] value
          state = State::kAfterValue;
          continue;
        }
        state = State::kValue;
        continue;
      case State::kMember: {
        if (p >= e || *p != '"') return false;
        const unsigned char *kb, *ke;
        bool escaped;
        if (!string(p, e, &kb, &ke, &escaped, &plain)) return false;
        if (depth == 1) {
          if (escaped) return false;  // rare: let the reference decide what it names
          field = nullptr;
          if (key_is(kb, ke, "type", 4)) {
            pending = Key::kType;
          } else {
            pending = Key::kOther;
            if (key_is(kb, ke, "timestamp", 9)) {
              has_timestamp = true;
              if (members) field = &members->timestamp;
            } else if (key_is(kb, ke, "reply_to", 8)) {
              has_reply_to = true;
            } else if (key_is(kb, ke, "sender", 6)) {
              has_sender = true;
            } else if (members) {
              if (key_is(kb, ke, "seq", 3)) {
                members->has_seq = true;
              } else if (key_is(kb, ke, "machine_id", 10)) {
                field = &members->machine_id;
              } else if (key_is(kb, ke, "state", 5)) {
                field = &members->state;
              } else if (key_is(kb, ke, "previous_state", 14)) {
                field = &members->previous_state;
              } else if (key_is(kb, ke, "data", 4)) {
                field = &members->data;
              }
            }
          }
        }
        skip_space(p, e);
        if (p >= e || *p != ':') return false;
        ++p;
        state = State::kValue;
        continue;
      }
      case State::kValue: {
        if (p >= e) return false;
        bool is_type = depth == 1 && pending == Key::kType;
        if (depth == 1) value_begin = p;
        unsigned char c = *p;
        if (c == '"') {
          const unsigned char *b, *en;
          bool escaped;
          if (!string(p, e, &b, &en, &escaped, &plain)) return false;
          if (is_type) {
            if (escaped) return false;
            type_kind = Kind::kString;
            type_begin = b;
            type_end = en;
          }
        } else if (c == '{' || c == '[') {
          if (is_type) type_kind = Kind::kOther;
          if (depth == kMaxDepth) return false;
          if (depth == kPlainMaxDepth) plain = false;
          stack[depth++] = static_cast<char>(c);
          ++p;
          state = c == '{' ? State::kObjectFirst : State::kArrayFirst;
          continue;
        } else if (c == 't' || c == 'f' || c == 'n') {
          bool ok = c == 't' ? literal(p, e, "true", 4)
                             : c == 'f' ? literal(p, e, "false", 5) : literal(p, e, "null", 4);
          if (!ok) return false;
          if (is_type) type_kind = Kind::kOther;
        } else if (c == '-' || is_digit(c)) {
          if (!number(p, e, &plain)) return false;
          if (is_type) type_kind = Kind::kOther;
        } else {
          return false;
        }
        if (depth == 1 && field) take(p);  // a top-level scalar value
        state = State::kAfterValue;
        continue;
      }
      case State::kAfterValue:
        if (depth == 0) {
          if (p != e) return false;  // trailing bytes after the object
          if (type_kind != Kind::kString || type_begin == type_end) return false;
          out->valid = true;
          out->error.clear();
          out->type.assign(reinterpret_cast<const char*>(type_begin),
                           static_cast<size_t>(type_end - type_begin));
          out->has_timestamp = has_timestamp;
          out->has_reply_to = has_reply_to;
          out->has_sender = has_sender;
          if (members) {
            members->settled = true;
            members->plain = plain;
          }
          return true;
        }
        if (p >= e) return false;
        if (*p == ',') {
          ++p;
          state = stack[depth - 1] == '{' ? State::kMember : State::kValue;
          continue;
        }
        if (*p == (stack[depth - 1] == '{' ? '}' : ']')) {
          ++p;
          --depth;
          if (depth == 1 && field) take(p);  // a top-level object or array value
          continue;
        }
        return false;
    }
  }
}

}  // namespace fast

bool scan(std::string_view bytes, Scan* out, Members* members) {
  if (fast::scan(bytes, out, members)) return true;
  if (members) *members = Members{};  // not settled: nothing to report
  return scan_reference(bytes, out);
}

bool scan_reference(std::string_view bytes, Scan* out) {
  out->valid = false;
  out->error.clear();
  out->type.clear();
  out->has_timestamp = false;
  out->has_reply_to = false;
  out->has_sender = false;

  ScanHandler handler(out);
  const char* begin = bytes.data();
  bool ok = Json::sax_parse(begin, begin + bytes.size(), &handler);
  if (!ok) {
    if (handler.is_not_object()) {
      out->error = "not a JSON object";
    } else if (!is_valid_utf8(bytes)) {
      out->error = "not UTF-8";
    } else {
      out->error = "not JSON: " + strip_exception_tag(handler.parse_error_text());
    }
    return false;
  }
  if (!handler.type_seen()) {
    out->error = "no \"type\" member";
  } else if (!handler.type_is_string()) {
    out->error = "\"type\" is not a string";
  } else if (out->type.empty()) {
    out->error = "\"type\" is empty";
  } else {
    out->valid = true;
  }
  return out->valid;
}

std::string_view trim(std::string_view bytes) {
  size_t b = 0, e = bytes.size();
  while (b < e && is_json_space(bytes[b])) ++b;
  while (e > b && is_json_space(bytes[e - 1])) --e;
  return bytes.substr(b, e - b);
}

size_t format_now_timestamp(char (&buf)[32]) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  // Integer digits by hand: printf("%.6f") of a double costs more than the
  // rest of sm-send's per-line work, and a double would round the microseconds.
  char digits[24];
  size_t n = 0;
  auto secs = static_cast<unsigned long long>(ts.tv_sec < 0 ? 0 : ts.tv_sec);
  do {
    digits[n++] = static_cast<char>('0' + secs % 10);
    secs /= 10;
  } while (secs > 0);
  size_t len = 0;
  while (n > 0) buf[len++] = digits[--n];
  buf[len++] = '.';
  auto micros = static_cast<unsigned long>(ts.tv_nsec / 1000);
  for (int i = 5; i >= 0; --i) {
    buf[len + static_cast<size_t>(i)] = static_cast<char>('0' + micros % 10);
    micros /= 10;
  }
  return len + 6;
}

std::string now_timestamp() {
  char buf[32];
  return std::string(buf, format_now_timestamp(buf));
}

void append_with_field(std::string* out, std::string_view event, std::string_view key,
                       std::string_view json_value) {
  // event ends in '}' (trimmed, valid object) and is non-empty (it has "type"),
  // so a comma before the new member is always right.
  out->append(event.data(), event.size() - 1);
  out->append(",\"");
  out->append(key);
  out->append("\":");
  out->append(json_value);
  out->push_back('}');
}

std::string json_quote(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

void append_single_line(std::string* out, std::string_view event) {
  event = trim(event);
  const char* p = event.data();
  const char* end = p + event.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    const void* cr = std::memchr(p, '\r', static_cast<size_t>(end - p));
    const char* stop = end;
    if (nl) stop = static_cast<const char*>(nl);
    if (cr && static_cast<const char*>(cr) < stop) stop = static_cast<const char*>(cr);
    out->append(p, static_cast<size_t>(stop - p));
    p = stop == end ? end : stop + 1;
  }
}

bool set_member(std::string* event, const std::string& key, std::string_view json_value,
                std::string* error) {
  try {
    auto dom = nlohmann::ordered_json::parse(*event);
    if (!dom.is_object()) {
      *error = "not a JSON object";
      return false;
    }
    dom[key] = nlohmann::ordered_json::parse(json_value);
    *event = dom.dump();
    return true;
  } catch (const nlohmann::json::exception& e) {
    *error = strip_exception_tag(e.what());
    return false;
  }
}

bool parse_field(std::string_view arg, Field* out, std::string* error) {
  *out = Field{};
  std::string_view rest = arg;
  if (!rest.empty() && rest[0] == '@') {
    out->top_level = true;
    rest.remove_prefix(1);
  }
  // The first unescaped '=' ends the key; a ':' just before it makes it ':='.
  size_t i = 0;
  for (; i < rest.size(); ++i) {
    if (rest[i] == '\\') {
      ++i;
      continue;
    }
    if (rest[i] == '=') break;
    if (rest[i] == ':' && i + 1 < rest.size() && rest[i + 1] == '=') break;
  }
  if (i >= rest.size()) {
    *error = "field '" + excerpt(arg) +
             "' needs a separator: key=value, key:=json, @key=value or @key:=json";
    return false;
  }
  out->raw_json = rest[i] == ':';
  out->key = unescape_key(rest.substr(0, i));
  out->value = std::string(rest.substr(i + (out->raw_json ? 2 : 1)));
  if (out->key.empty()) {
    *error = "field '" + excerpt(arg) + "' has an empty key";
    return false;
  }
  if (!is_valid_utf8(out->key) || !is_valid_utf8(out->value)) {
    *error = "field '" + excerpt(arg) + "' is not UTF-8";
    return false;
  }
  if (out->raw_json && !Json::accept(out->value)) {
    *error = "field '" + excerpt(arg) + "': the value after ':=' is not JSON" +
             " (quote strings as key=value, or key:='\"text\"')";
    return false;
  }
  return true;
}

bool build(const BuildSpec& spec, std::string* out, std::string* error) {
  using Ordered = nlohmann::ordered_json;
  if (!is_valid_utf8(spec.type)) {
    *error = "TYPE is not UTF-8";
    return false;
  }
  Ordered event = Ordered::object();
  event["type"] = spec.type;
  auto put_string = [&](const char* key, const std::optional<std::string>& v, const char* flag) {
    if (!v) return true;
    if (!is_valid_utf8(*v)) {
      *error = std::string(flag) + " is not UTF-8";
      return false;
    }
    event[key] = *v;
    return true;
  };
  if (!put_string("machine_id", spec.machine_id, "--machine") ||
      !put_string("state", spec.state, "--state") ||
      !put_string("previous_state", spec.previous_state, "--previous")) {
    return false;
  }

  std::vector<Field> data_fields;
  for (const auto& arg : spec.fields) {
    Field f;
    if (!parse_field(arg, &f, error)) return false;
    if (!f.top_level) {
      data_fields.push_back(std::move(f));
      continue;
    }
    event[f.key] = f.raw_json ? Ordered::parse(f.value) : Ordered(f.value);
  }
  if (!data_fields.empty()) {
    auto& data = event["data"];
    if (data.is_null()) data = Ordered::object();
    if (!data.is_object()) {
      *error = "key=value fields go into \"data\", but @data is not an object";
      return false;
    }
    for (auto& f : data_fields) {
      data[f.key] = f.raw_json ? Ordered::parse(f.value) : Ordered(std::move(f.value));
    }
  }
  if (!event["type"].is_string() || event["type"].get_ref<const std::string&>().empty()) {
    *error = "the event needs a non-empty string \"type\"";
    return false;
  }
  *out = event.dump();
  return true;
}

std::string excerpt(std::string_view bytes, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  static const char kHex[] = "0123456789abcdef";
  auto hex = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  while (i < bytes.size() && i < max_bytes) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x20 || c == 0x7f) {
      hex(c);
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      // Copy a whole UTF-8 sequence when it is valid, else escape the byte.
      size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
      if (len > 1 && i + len <= bytes.size() && is_valid_utf8(bytes.substr(i, len))) {
        out.append(bytes.data() + i, len);
        i += len;
      } else {
        hex(c);
        ++i;
      }
    }
  }
  if (i < bytes.size()) out += "…";
  return out;
}

}  // namespace smws::event
