// SPDX-License-Identifier: Apache-2.0
#include "smws/net/send_queue.h"

#include <algorithm>

#include "smws/ws_frame.h"

namespace smws::net {

Frame make_text_frame(std::string_view payload) {
  return make_frame(ws::encode_frame(ws::Opcode::kText, payload));
}

void SendQueue::push_pong(std::string_view payload) {
  pong_payload_.assign(payload);
  if (!pong_queued_) {
    pong_queued_ = true;
    push(nullptr, EntryKind::kPong);
  }
}

uint64_t SendQueue::drop_oldest_and_push(const Frame& frame, size_t max_bytes) {
  // Nothing at p has been started, so a notice there may still change.
  size_t p = has_partial_front() ? 1 : 0;
  if (p < entries_.size() && entries_[p].kind == EntryKind::kDropNotice) {
    entries_[p].frame.reset();  // re-encoded with the new count when written
  } else {
    QueueEntry notice;
    notice.kind = EntryKind::kDropNotice;
    entries_.insert(entries_.begin() + static_cast<std::ptrdiff_t>(p), std::move(notice));
  }
  uint64_t dropped = 0;
  auto first = entries_.begin() + static_cast<std::ptrdiff_t>(p) + 1;
  do {
    auto victim = std::find_if(first, entries_.end(),
                               [](const QueueEntry& e) { return e.kind == EntryKind::kData; });
    if (victim == entries_.end()) {
      if (dropped > 0) break;  // room was made as far as it can be
      // Only a partial one: the new one is dropped.
      ++entries_[p].dropped;
      return 1;
    }
    --data_queued_;
    data_bytes_ -= victim->frame->size();
    first = entries_.erase(victim);
    ++dropped;
  } while (data_bytes_ >= max_bytes);
  entries_[p].dropped += dropped;
  push(frame, EntryKind::kData);
  return dropped;
}

void SendQueue::discard_unstarted() {
  auto first = entries_.begin() + (has_partial_front() ? 1 : 0);
  // remove_if applies the predicate exactly once per entry.
  auto last = std::remove_if(first, entries_.end(), [this](const QueueEntry& e) {
    if (e.kind == EntryKind::kRaw || e.kind == EntryKind::kClose) return false;
    if (e.kind == EntryKind::kData) {
      --data_queued_;
      data_bytes_ -= e.frame->size();
    }
    if (e.kind == EntryKind::kPong && !e.frame) pong_queued_ = false;
    return true;
  });
  entries_.erase(last, entries_.end());
}

void SendQueue::materialize(QueueEntry& e, const DropNotice& notice) {
  if (e.frame) return;
  if (e.kind == EntryKind::kPong) {
    e.frame = make_frame(ws::encode_frame(ws::Opcode::kPong, pong_payload_));
    pong_queued_ = false;
  } else if (e.kind == EntryKind::kDropNotice) {
    e.frame = make_text_frame(notice(e.dropped));
  }
}

void SendQueue::clear() {
  entries_.clear();
  front_offset_ = 0;
  data_queued_ = 0;
  data_bytes_ = 0;
  pong_queued_ = false;
}

}  // namespace smws::net
