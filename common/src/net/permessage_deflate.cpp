// SPDX-License-Identifier: Apache-2.0
#include "smws/net/permessage_deflate.h"

#include <zlib.h>

#include <cctype>
#include <cstring>

#include "smws/ascii.h"

namespace smws::net {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) { return ascii_lower(a) == ascii_lower(b); }

// Each inflate() call produces output in pieces of this size.
constexpr size_t kChunk = 16 * 1024;

}  // namespace

std::optional<DeflateParams> parse_permessage_deflate(std::string_view extensions, std::string* error) {
  // "ext; param; param=value, ext2": extensions separated by commas, each
  // with semicolon-separated parameters (RFC 6455 §9.1).
  while (!extensions.empty()) {
    size_t comma = extensions.find(',');
    std::string_view ext = extensions.substr(0, comma);
    extensions = comma == std::string_view::npos ? std::string_view() : extensions.substr(comma + 1);
    size_t semi = ext.find(';');
    if (!iequals(trim(ext.substr(0, semi)), "permessage-deflate")) continue;
    DeflateParams params;
    std::string_view rest = semi == std::string_view::npos ? std::string_view() : ext.substr(semi + 1);
    while (!rest.empty()) {
      size_t next = rest.find(';');
      std::string_view param = trim(rest.substr(0, next));
      rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
      size_t eq = param.find('=');
      std::string_view name = trim(param.substr(0, eq));
      std::string_view value = eq == std::string_view::npos ? std::string_view() : trim(param.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      if (iequals(name, "server_no_context_takeover")) {
        params.server_no_context_takeover = true;
      } else if (iequals(name, "server_max_window_bits")) {
        int bits = 0;
        for (char c : value) bits = std::isdigit(static_cast<unsigned char>(c)) ? bits * 10 + (c - '0') : -1000;
        if (value.empty() || bits < 8 || bits > 15) {
          if (error) *error = "permessage-deflate: server_max_window_bits '" + std::string(value) + "' is not 8..15";
          return std::nullopt;
        }
        params.server_max_window_bits = bits;
      }
      // client_* parameters concern what the client would send: the probe
      // sends uncompressed messages (RSV1 clear), which is always allowed.
    }
    return params;
  }
  return std::nullopt;
}

struct Inflater::Stream {
  z_stream z{};
  bool ok = false;
};

Inflater::Inflater(const DeflateParams& params) : params_(params), stream_(std::make_unique<Stream>()) {
  // Negative window bits: raw DEFLATE, no zlib header. A window of 15 bits
  // inflates any stream made with a smaller one.
  stream_->ok = inflateInit2(&stream_->z, -15) == Z_OK;
}

Inflater::~Inflater() {
  if (stream_->ok) inflateEnd(&stream_->z);
}

Inflater::Result Inflater::inflate(std::string_view compressed, size_t max_size, std::string* out, std::string* error) {
  out->clear();
  if (!stream_->ok) {
    *error = "zlib could not be initialised";
    return Result::kCorrupt;
  }
  static const unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};  // RFC 7692 §7.2.2
  std::string input(compressed);
  input.append(reinterpret_cast<const char*>(kTail), sizeof kTail);
  z_stream& z = stream_->z;
  z.next_in = reinterpret_cast<Bytef*>(input.data());
  z.avail_in = static_cast<uInt>(input.size());
  char buf[kChunk];
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = ::inflate(&z, Z_SYNC_FLUSH);
    const size_t produced = sizeof buf - z.avail_out;
    if (out->size() + produced > max_size) {
      *error = "compressed message inflates to more than the limit of " + std::to_string(max_size) + " bytes";
      inflateReset(&z);
      return Result::kTooBig;
    }
    out->append(buf, produced);
    if (rc == Z_STREAM_END) {
      // A final block (BFINAL) ends this stream; the next message starts a new one.
      inflateReset(&z);
      break;
    }
    if (rc == Z_BUF_ERROR || (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0)) break;  // all input used
    if (rc != Z_OK) {
      *error = std::string("compressed message is corrupt: ") + (z.msg ? z.msg : "inflate failed");
      inflateReset(&z);
      return Result::kCorrupt;
    }
  }
  if (params_.server_no_context_takeover) inflateReset(&z);
  return Result::kOk;
}

}  // namespace smws::net
