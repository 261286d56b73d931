// SPDX-License-Identifier: Apache-2.0
// RFC 6455 frame codec: the one WebSocket protocol piece written here, because
// POCO 1.11's WebSocket cannot be driven from an event loop (it neither answers
// pings nor close frames, and cannot resume a partial non-blocking send).
// Pure and socket-free, so it can be unit-tested and fuzzed; shared by
// ws-relay's event loop (server role) and ws-probe / hitl-approve (client role).
// Message shapes and limits: docs/protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smws/utf8.h"

namespace smws::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// RFC 6455 §7.4.1 close codes, plus 1013 (IANA registry).
enum CloseCode : uint16_t {
  kCloseNormal = 1000,
  kCloseGoingAway = 1001,
  kCloseProtocolError = 1002,
  kCloseUnsupportedData = 1003,
  kCloseNoStatus = 1005,      // never sent: "close frame had no code"
  kCloseAbnormal = 1006,      // never sent: "connection dropped without a close frame"
  kCloseInvalidPayload = 1007,
  kClosePolicyViolation = 1008,
  kCloseMessageTooBig = 1009,
  kCloseMandatoryExtension = 1010,
  kCloseInternalError = 1011,
  kCloseTryAgainLater = 1013,
};

// Control frames carry at most 125 bytes of payload (RFC 6455 §5.5).
inline constexpr size_t kMaxControlPayload = 125;

const char* opcode_name(Opcode op);
// "normal closure", "going away", "protocol error", ... for reports.
const char* close_code_meaning(uint16_t code);

// Which side of the connection the codec runs on. Clients must mask every
// frame they send and servers must not (RFC 6455 §5.1); each side rejects the
// other kind with 1002.
enum class Role { kServer, kClient };

// Appends one complete frame to *out. mask_key must be 4 bytes in the client
// role (frames a client sends are masked) and nullptr in the server role.
// Server frames are unmasked, so one encoding serves every client.
void append_frame(std::string* out, Opcode op, std::string_view payload, bool fin = true,
                  const uint8_t* mask_key = nullptr);
std::string encode_frame(Opcode op, std::string_view payload, bool fin = true,
                         const uint8_t* mask_key = nullptr);

// Close frame payload: 2-byte code then the UTF-8 reason (truncated to fit 125).
std::string close_payload(uint16_t code, std::string_view reason);
std::string encode_close(uint16_t code, std::string_view reason,
                         const uint8_t* mask_key = nullptr);

// Parses a received close payload. Empty payload → code 1005, reason "".
// Returns false (a protocol error, 1002) for a 1-byte payload, a code that may
// not be sent on the wire, or a reason that is not UTF-8.
bool parse_close_payload(std::string_view payload, uint16_t* code, std::string* reason);

// One thing the reader produced: a complete data message (fragments already
// reassembled) or a single control frame, which can arrive between fragments.
struct Message {
  Opcode opcode = Opcode::kText;  // kText, kBinary, kClose, kPing or kPong
  std::string payload;            // unmasked
  bool compressed = false;        // RSV1 was set: permessage-deflate data, see allow_compressed()
};

// Incremental frame reader: feed() whatever the socket gave, then call next()
// until it says kNeedMore. Validates everything RFC 6455 asks of the receiver:
// RSV bits (no extension is negotiated), known opcodes, masking by role,
// fragmented control frames, control payloads > 125 bytes, continuation
// without a start, a new data frame inside a fragmented message, 64-bit
// lengths with the top bit set, text that is not UTF-8 (checked as fragments
// arrive), close payloads, and the message size limit.
// After kError the connection must be closed with error_code(); the reader
// stays in the error state.
class FrameReader {
 public:
  enum class Status { kNeedMore, kMessage, kError };

  // max_message: largest data message accepted (after reassembly), in bytes;
  // larger ones fail with 1009 before their payload is buffered.
  explicit FrameReader(Role role, size_t max_message = 1 << 20);

  void feed(const char* data, size_t size);
  void feed(std::string_view data) { feed(data.data(), data.size()); }

  Status next(Message* out);

  // permessage-deflate was negotiated (RFC 7692 §6): RSV1 may then be set on
  // the first frame of a data message. Such a message comes out with
  // compressed = true and its text is not UTF-8-checked here (the caller
  // checks the inflated text); RSV1 on a control or continuation frame, and
  // RSV2/RSV3, stay protocol errors.
  void allow_compressed(bool allow) { compressed_allowed_ = allow; }

  uint16_t error_code() const { return error_code_; }
  const std::string& error_reason() const { return error_reason_; }

  // Bytes fed but not yet consumed (a partial frame).
  size_t buffered() const { return buffer_.size() - pos_; }
  // True between the first and the last fragment of a data message.
  bool in_fragmented_message() const { return in_message_; }

 private:
  Status fail(uint16_t code, std::string reason);

  Role role_;
  size_t max_message_;
  std::string buffer_;  // fed bytes; [pos_, end) not yet consumed
  size_t pos_ = 0;
  bool in_message_ = false;  // inside a fragmented data message
  Opcode message_opcode_ = Opcode::kText;
  bool compressed_allowed_ = false;
  bool message_compressed_ = false;  // the fragmented message in progress had RSV1
  std::string message_;      // reassembled payload so far
  Utf8Validator utf8_;       // incremental validation of a text message_
  uint16_t error_code_ = 0;
  std::string error_reason_;
};

}  // namespace smws::ws
