#include "smws/terminal_text.h"

#include <cstdint>

namespace smws {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_byte_escape(std::string& out, unsigned char c) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

void append_codepoint_escape(std::string& out, uint32_t cp) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xf];
}

bool is_bidi_control(uint32_t cp) {
  return cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF) and its code point; 0 when invalid.
std::size_t decode(const unsigned char* p, std::size_t left, uint32_t* cp) {
  unsigned char b0 = p[0];
  std::size_t n;
  uint32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2, min = 0x80, *cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3, min = 0x800, *cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4, min = 0x10000, *cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (left < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (p[i] & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return n;
}

std::string escape(std::string_view bytes, bool keep_newline) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t size = bytes.size();
  for (std::size_t i = 0; i < size;) {
    unsigned char c = p[i];
    if (c < 0x80) {
      if (c == '\t' || (c == '\n' && keep_newline) || (c >= 0x20 && c != 0x7F)) {
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else {
        append_byte_escape(out, c);
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    std::size_t n = decode(p + i, size - i, &cp);
    if (n == 0) {
      append_byte_escape(out, c);  // resynchronise on the next byte
      ++i;
      continue;
    }
    if ((cp >= 0x80 && cp <= 0x9F) || is_bidi_control(cp))
      append_codepoint_escape(out, cp);
    else
      out.append(bytes.data() + i, n);
    i += n;
  }
  return out;
}

}  // namespace

std::string terminal_safe(std::string_view bytes) { return escape(bytes, true); }

std::string terminal_safe_line(std::string_view bytes) { return escape(bytes, false); }

std::string redact_url_token(std::string_view url) {
  std::size_t query = url.find('?');
  if (query == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, query + 1));
  std::size_t i = query + 1;
  while (i < url.size()) {
    if (url[i] == '#' || url[i] == ' ') break;  // the fragment, or the rest of a request line
    std::size_t end = url.find_first_of("&# ", i);
    if (end == std::string_view::npos) end = url.size();
    std::string_view param = url.substr(i, end - i);
    if (param.size() > 6 && param.substr(0, 6) == "token=")
      out += "token=\xE2\x80\xA6";  // U+2026 …
    else
      out.append(param);
    i = end;
    if (i < url.size() && url[i] == '&') out += url[i++];
  }
  out.append(url.substr(i));
  return out;
}

}  // namespace smws
