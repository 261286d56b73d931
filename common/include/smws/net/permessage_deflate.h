// SPDX-License-Identifier: Apache-2.0
// permessage-deflate (RFC 7692) on the receiving side of a client: the
// inflater for the messages a server compresses. ws-probe offers no
// extension, but some servers and proxies force this one anyway (an RFC 6455
// §9.1 violation that browsers refuse); the probe still decompresses their
// frames so they are counted, typed and timestamp-checked like any other.
// zlib does the work (raw DEFLATE, the 00 00 ff ff tail restored, §7.2.2).
//
// Threads: one Inflater per connection, used by the thread that reads it.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace smws::net {

// The parameters of a Sec-WebSocket-Extensions value that concern inflating.
struct DeflateParams {
  bool server_no_context_takeover = false;  // each message is its own stream
  int server_max_window_bits = 15;          // 8..15
};
// Parses a response's Sec-WebSocket-Extensions value: the permessage-deflate
// parameters when that extension is in it, nullopt otherwise (or when its
// parameters are malformed, *error then says why).
std::optional<DeflateParams> parse_permessage_deflate(std::string_view extensions, std::string* error);

class Inflater {
 public:
  explicit Inflater(const DeflateParams& params);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflates one message's payload (all its frames, RSV1 set on the first).
  // At most max_size bytes come out: a larger result (a decompression bomb,
  // or simply a big message) fails like an oversize message would:
  // *error on corrupt data (kCorrupt) or past the size limit (kTooBig).
  enum class Result { kOk, kCorrupt, kTooBig };
  Result inflate(std::string_view compressed, size_t max_size, std::string* out, std::string* error);

 private:
  struct Stream;
  DeflateParams params_;
  std::unique_ptr<Stream> stream_;
};

}  // namespace smws::net
