// SPDX-License-Identifier: Apache-2.0
// SendQueue: one WebSocket connection's output queue and its drop policy
// (uWebSockets' SendStatus idea: a push says what happened). Frames are
// shared and encoded once (a broadcast costs one reference per client);
// control frames and the close frame ride in the same queue so the stream
// stays in order. Owned by one connection, used by the loop thread only.
//
// The bounds count data messages only, by number (max_queue) and by bytes
// (max_queue_bytes, the encoded frames): our pings are one per interval and
// pongs coalesce to one entry, so control entries are bounded anyway. A
// count alone would let one client hold 1,024 snapshots of a large table
// (hundreds of MB); the bytes bound that. What the queue does on overflow
// under kDrop is here; deciding that a client is slow (and closing it under
// kDisconnect) is the server's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace smws::net {

// One encoded WebSocket frame (or HTTP bytes), shared by every queue it is in.
using Frame = std::shared_ptr<const std::string>;
inline Frame make_frame(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}
// A text frame as a server sends it (unmasked, so one encoding serves all).
Frame make_text_frame(std::string_view payload);

enum class SlowClientPolicy {
  kDisconnect,  // a full queue closes the client with 1013
  kDrop,        // a full queue drops its oldest message, counted in a notice
};

// What happened to a message handed to the server.
enum class SendStatus {
  kQueued,    // in the client's queue
  kDropped,   // queue full under kDrop: the oldest message made room (counted)
  kClosing,   // client is closing (or just got closed for overflow): not sent
  kNoClient,  // unknown id
};

// Builds the text of the data message that stands where `count` messages
// were dropped (the tool's protocol: ws-relay's {"type":"dropped",...}).
using DropNotice = std::function<std::string(uint64_t count)>;

enum class EntryKind : uint8_t {
  kData,        // a data message (counts against max_queue)
  kControl,     // our ping
  kPong,        // answer to the peer's latest ping, encoded when written
  kClose,       // our close frame
  kDropNotice,  // stands for `dropped` messages, encoded when written
  kRaw,         // HTTP bytes (101 or a reply)
};

struct QueueEntry {
  Frame frame;  // null only for a kPong or kDropNotice not yet encoded
  EntryKind kind = EntryKind::kData;
  uint64_t dropped = 0;  // kDropNotice: messages it stands for
};

class SendQueue {
 public:
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t data_queued() const { return data_queued_; }
  // Bytes of the data messages queued (whole frames, also one partly written).
  size_t data_bytes() const { return data_bytes_; }
  // Bytes of the front entry already written (plain TCP); the rest must
  // follow before anything else or the stream breaks.
  size_t front_offset() const { return front_offset_; }
  bool has_partial_front() const { return front_offset_ > 0; }

  void push(Frame frame, EntryKind kind) {
    if (kind == EntryKind::kData) {
      ++data_queued_;
      data_bytes_ += frame->size();
    }
    entries_.push_back(QueueEntry{std::move(frame), kind, 0});
  }

  // Answers a ping. At most one pong is queued: it carries the latest
  // ping's payload (RFC 6455 §5.5.3 allows answering only the latest), so a
  // ping flood from a peer that does not read costs one entry, not one each.
  void push_pong(std::string_view payload);

  // Overflow under kDrop: the oldest data message not yet started is
  // removed and counted in a drop notice standing where it was (consecutive
  // drops merge into one notice), then `frame` is appended. When no data
  // message can be removed (only a partly written one is queued), `frame`
  // itself is the one dropped and counted. Then, while the data queued is
  // still max_bytes or more, the next oldest go the same way (a large
  // message makes room by bytes, not by one message). Every message is
  // therefore delivered or counted, in order. Returns how many were dropped.
  uint64_t drop_oldest_and_push(const Frame& frame, size_t max_bytes = SIZE_MAX);

  // Drops the entries not yet started: data, drop notices, pings, pongs.
  // Kept: a frame partly written (its rest must follow), HTTP bytes (a 101
  // precedes every frame) and the close frame.
  void discard_unstarted();

  // --- the writer (Transport) ---
  // Front-to-back access; materialize() before reading an entry's frame.
  QueueEntry& at(size_t i) { return entries_[i]; }
  QueueEntry& front() { return entries_.front(); }
  // Encodes an entry built lazily (a pong, a drop notice) into its frame.
  void materialize(QueueEntry& e, const DropNotice& notice);
  // n more bytes of the front entry were written.
  void advance_front(size_t n) { front_offset_ += n; }
  // The front entry is fully written: removes it.
  void pop_front() {
    if (entries_.front().kind == EntryKind::kData) {
      --data_queued_;
      data_bytes_ -= entries_.front().frame->size();
    }
    front_offset_ = 0;
    entries_.pop_front();
  }
  void clear();

 private:
  std::deque<QueueEntry> entries_;
  size_t front_offset_ = 0;
  size_t data_queued_ = 0;   // kData entries in entries_
  size_t data_bytes_ = 0;    // their frames' bytes
  bool pong_queued_ = false; // a kPong entry is queued and not yet encoded
  std::string pong_payload_; // what it will answer with
};

}  // namespace smws::net
