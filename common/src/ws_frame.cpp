// SPDX-License-Identifier: Apache-2.0
#include "smws/ws_frame.h"

#include <algorithm>
#include <cstring>

namespace smws::ws {
namespace {

constexpr uint8_t kFinBit = 0x80;
constexpr uint8_t kRsvBits = 0x70;
constexpr uint8_t kRsv1Bit = 0x40;  // permessage-deflate's "compressed" bit
constexpr uint8_t kOpcodeBits = 0x0F;
constexpr uint8_t kMaskBit = 0x80;

bool is_control(uint8_t op) { return op >= 0x8; }

bool is_known_opcode(uint8_t op) {
  return op == 0x0 || op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xA;
}

// XORs data with the 4-byte key starting at key offset 0, a word at a time.
void apply_mask(char* data, size_t size, const uint8_t* key) {
  uint64_t key64;
  uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  std::memcpy(&key64, k8, 8);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    word ^= key64;
    std::memcpy(data + i, &word, 8);
  }
  for (; i < size; ++i) data[i] = static_cast<char>(data[i] ^ key[i & 3]);
}

// Codes an endpoint may put in a close frame (RFC 6455 §7.4, IANA registry).
bool is_sendable_close_code(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000: case 1001: case 1002: case 1003: case 1007: case 1008:
    case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* opcode_name(Opcode op) {
  switch (op) {
    case Opcode::kContinuation: return "continuation";
    case Opcode::kText: return "text";
    case Opcode::kBinary: return "binary";
    case Opcode::kClose: return "close";
    case Opcode::kPing: return "ping";
    case Opcode::kPong: return "pong";
  }
  return "unknown";
}

const char* close_code_meaning(uint16_t code) {
  switch (code) {
    case 1000: return "normal closure";
    case 1001: return "going away (server shutting down or page left)";
    case 1002: return "protocol error";
    case 1003: return "unsupported data";
    case 1005: return "no status code in the close frame";
    case 1006: return "abnormal closure: the connection dropped without a close frame";
    case 1007: return "invalid payload data (e.g. text that is not UTF-8)";
    case 1008: return "policy violation (e.g. ping timeout, authentication)";
    case 1009: return "message too big";
    case 1010: return "a required extension was not negotiated";
    case 1011: return "internal server error";
    case 1012: return "service restart";
    case 1013: return "try again later (server overloaded or client too slow)";
    case 1014: return "bad gateway";
    case 1015: return "TLS handshake failure";
    default:
      if (code >= 4000 && code <= 4999) return "application-defined (private use)";
      if (code >= 3000 && code <= 3999) return "registered by a library or framework";
      return "not a valid close code";
  }
}

void append_frame(std::string* out, Opcode op, std::string_view payload, bool fin,
                  const uint8_t* mask_key) {
  const size_t size = payload.size();
  uint8_t header[14];
  size_t n = 0;
  header[n++] = static_cast<uint8_t>((fin ? kFinBit : 0) | static_cast<uint8_t>(op));
  const uint8_t mask = mask_key ? kMaskBit : 0;
  if (size < 126) {
    header[n++] = static_cast<uint8_t>(mask | size);
  } else if (size <= 0xFFFF) {
    header[n++] = static_cast<uint8_t>(mask | 126);
    header[n++] = static_cast<uint8_t>(size >> 8);
    header[n++] = static_cast<uint8_t>(size);
  } else {
    header[n++] = static_cast<uint8_t>(mask | 127);
    for (int shift = 56; shift >= 0; shift -= 8) header[n++] = static_cast<uint8_t>(uint64_t{size} >> shift);
  }
  if (mask_key) {
    std::memcpy(header + n, mask_key, 4);
    n += 4;
  }
  const size_t start = out->size();
  out->reserve(start + n + size);
  out->append(reinterpret_cast<const char*>(header), n);
  out->append(payload.data(), size);
  if (mask_key) apply_mask(out->data() + start + n, size, mask_key);
}

std::string encode_frame(Opcode op, std::string_view payload, bool fin, const uint8_t* mask_key) {
  std::string out;
  append_frame(&out, op, payload, fin, mask_key);
  return out;
}

std::string close_payload(uint16_t code, std::string_view reason) {
  // Cut the reason to fit 125 bytes without splitting a UTF-8 character.
  size_t keep = std::min(reason.size(), kMaxControlPayload - 2);
  while (keep > 0 && keep < reason.size() &&
         (static_cast<uint8_t>(reason[keep]) & 0xC0) == 0x80) {
    --keep;
  }
  std::string payload;
  payload.reserve(2 + keep);
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason.data(), keep);
  return payload;
}

std::string encode_close(uint16_t code, std::string_view reason, const uint8_t* mask_key) {
  return encode_frame(Opcode::kClose, close_payload(code, reason), true, mask_key);
}

bool parse_close_payload(std::string_view payload, uint16_t* code, std::string* reason) {
  reason->clear();
  if (payload.empty()) {
    *code = kCloseNoStatus;
    return true;
  }
  if (payload.size() < 2) return false;
  *code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                static_cast<uint8_t>(payload[1]));
  std::string_view text = payload.substr(2);
  if (!is_sendable_close_code(*code) || !is_valid_utf8(text)) return false;
  reason->assign(text.data(), text.size());
  return true;
}

FrameReader::FrameReader(Role role, size_t max_message) : role_(role), max_message_(max_message) {}

namespace {

// std::string grows (append and reserve alike) to at least twice its
// capacity: a message just over 1 MiB would hold 2 MiB. A reader's buffers
// are held per client, so they grow to a capacity chosen here instead.
void grow_to(std::string* s, size_t capacity) {
  std::string bigger;
  bigger.reserve(capacity);  // from an empty string: exactly (above 30 bytes)
  bigger.append(*s);
  s->swap(bigger);
}

// Past this, the fed-bytes buffer grows by what is needed plus this, not by
// doubling: a large frame arriving in 64 KiB reads costs a few copies, and
// the buffer stays within a frame plus 256 KiB.
constexpr size_t kBufferSlack = 256 * 1024;

}  // namespace

void FrameReader::feed(const char* data, size_t size) {
  if (error_code_ != 0) return;
  // Drop the consumed prefix before growing, so the buffer holds at most one
  // partial frame plus what was just fed.
  if (pos_ > 0 && (pos_ == buffer_.size() || pos_ >= 64 * 1024)) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t need = buffer_.size() + size;
  if (need > buffer_.capacity()) {
    grow_to(&buffer_, std::max(need, std::min(2 * buffer_.capacity(), need + kBufferSlack)));
  }
  buffer_.append(data, size);
}

FrameReader::Status FrameReader::fail(uint16_t code, std::string reason) {
  error_code_ = code;
  error_reason_ = std::move(reason);
  return Status::kError;
}

FrameReader::Status FrameReader::next(Message* out) {
  if (error_code_ != 0) return Status::kError;
  for (;;) {
    const size_t avail = buffer_.size() - pos_;
    if (avail < 2) return Status::kNeedMore;
    const auto* p = reinterpret_cast<const uint8_t*>(buffer_.data() + pos_);
    const bool fin = p[0] & kFinBit;
    const uint8_t op = p[0] & kOpcodeBits;
    const bool masked = p[1] & kMaskBit;
    uint64_t length = p[1] & 0x7F;

    const bool rsv1 = (p[0] & kRsvBits) == kRsv1Bit && compressed_allowed_;
    if ((p[0] & kRsvBits) && !rsv1) {
      return fail(kCloseProtocolError, compressed_allowed_ ? "RSV2/RSV3 set (only permessage-deflate's RSV1 was negotiated)"
                                                           : "reserved bits set (no extension was negotiated)");
    }
    if (rsv1 && (is_control(op) || op == 0x0)) {
      return fail(kCloseProtocolError, "RSV1 set on a control or continuation frame");
    }
    if (!is_known_opcode(op)) return fail(kCloseProtocolError, "unknown opcode " + std::to_string(op));
    if (role_ == Role::kServer && !masked) return fail(kCloseProtocolError, "client frame is not masked");
    if (role_ == Role::kClient && masked) return fail(kCloseProtocolError, "server frame is masked");
    if (is_control(op)) {
      if (!fin) return fail(kCloseProtocolError, "fragmented control frame");
      if (length > kMaxControlPayload) return fail(kCloseProtocolError, "control frame payload over 125 bytes");
    } else if (op == 0x0 && !in_message_) {
      return fail(kCloseProtocolError, "continuation frame without a message to continue");
    } else if (op != 0x0 && in_message_) {
      return fail(kCloseProtocolError, "new data frame inside a fragmented message");
    }

    size_t header = 2;
    if (length == 126) {
      if (avail < 4) return Status::kNeedMore;
      length = (uint64_t{p[2]} << 8) | p[3];
      header = 4;
    } else if (length == 127) {
      if (avail < 10) return Status::kNeedMore;
      length = 0;
      for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
      if (length >> 63) return fail(kCloseProtocolError, "frame length has the most significant bit set");
      header = 10;
    }
    if (!is_control(op)) {
      const uint64_t so_far = in_message_ ? message_.size() : 0;
      if (length > max_message_ || so_far + length > max_message_) {
        return fail(kCloseMessageTooBig, "message of at least " + std::to_string(so_far + length) +
                                             " bytes exceeds the limit of " +
                                             std::to_string(max_message_));
      }
    }
    const size_t key_size = masked ? 4 : 0;
    if (avail < header + key_size + length) return Status::kNeedMore;

    uint8_t key[4] = {0, 0, 0, 0};
    if (masked) std::memcpy(key, p + header, 4);
    const char* payload = buffer_.data() + pos_ + header + key_size;
    const size_t size = static_cast<size_t>(length);
    pos_ += header + key_size + size;

    if (is_control(op)) {
      out->opcode = static_cast<Opcode>(op);
      out->compressed = false;
      out->payload.assign(payload, size);
      if (masked) apply_mask(out->payload.data(), size, key);
      if (out->opcode == Opcode::kClose) {
        uint16_t code;
        std::string reason;
        if (!parse_close_payload(out->payload, &code, &reason)) {
          return fail(kCloseProtocolError, "invalid close frame (bad code, length or UTF-8 reason)");
        }
      }
      return Status::kMessage;
    }

    // Data frame: unfragmented fast path straight into out, else reassemble.
    if (op != 0x0 && fin) {
      out->opcode = static_cast<Opcode>(op);
      out->compressed = rsv1;
      out->payload.assign(payload, size);
      if (masked) apply_mask(out->payload.data(), size, key);
      if (out->opcode == Opcode::kText && !rsv1 && !is_valid_utf8(out->payload)) {
        return fail(kCloseInvalidPayload, "text message is not valid UTF-8");
      }
      return Status::kMessage;
    }
    if (op != 0x0) {
      in_message_ = true;
      message_opcode_ = static_cast<Opcode>(op);
      message_compressed_ = rsv1;
      message_.clear();
      utf8_.reset();
    }
    const size_t start = message_.size();
    // An unfinished message holds at most max_message_ bytes, capacity
    // included (start + size <= max_message_ was checked with the header).
    if (start + size > message_.capacity()) {
      grow_to(&message_, std::min(max_message_, std::max(start + size, 2 * message_.capacity())));
    }
    message_.append(payload, size);
    if (masked) apply_mask(message_.data() + start, size, key);
    const bool check_text = message_opcode_ == Opcode::kText && !message_compressed_;
    if (check_text && !utf8_.feed(std::string_view(message_).substr(start))) {
      return fail(kCloseInvalidPayload, "text message is not valid UTF-8");
    }
    if (!fin) continue;
    if (check_text && !utf8_.complete()) {
      return fail(kCloseInvalidPayload, "text message ends inside a UTF-8 character");
    }
    in_message_ = false;
    out->opcode = message_opcode_;
    out->compressed = message_compressed_;
    out->payload = std::move(message_);
    message_.clear();
    return Status::kMessage;
  }
}

}  // namespace smws::ws
