// SPDX-License-Identifier: Apache-2.0
// The pure parts of redis_stream.h: the append buffer, stream IDs, the
// tail's resync rule and the machine replay. No I/O, unit-tested.
#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "smws/redis_stream.h"

namespace smws::redis {

AppendBuffer::AppendBuffer(size_t capacity, std::string relay_id)
    : capacity_(std::max<size_t>(capacity, 1)), relay_id_(std::move(relay_id)) {}

bool AppendBuffer::push(Outgoing event) {
  bool kept_all = true;
  if (waiting_.size() >= capacity_) {
    waiting_.pop_front();
    ++dropped_pending_;
    ++dropped_total_;
    kept_all = false;
  }
  waiting_.push_back(std::move(event));
  return kept_all;
}

AppendBuffer::Batch AppendBuffer::take(size_t max_events, size_t max_bytes) {
  Batch batch;
  if (empty()) return batch;
  batch.counter = next_counter_++;
  size_t bytes = 0;
  if (dropped_pending_ > 0) {
    Outgoing gap;
    gap.event = nlohmann::json{{"type", "gap"},
                               {"reason", "redis buffer overflow"},
                               {"relay_id", relay_id_},
                               {"dropped", dropped_pending_}}
                    .dump();
    bytes += gap.event.size();
    batch.events.push_back(std::move(gap));
    dropped_pending_ = 0;
  }
  while (!waiting_.empty() && batch.events.size() < max_events) {
    const Outgoing& next = waiting_.front();
    if (!batch.events.empty() && bytes + next.event.size() > max_bytes) break;
    bytes += next.event.size();
    batch.events.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return batch;
}

bool parse_entry_id(std::string_view id, uint64_t* seq) {
  size_t dash = id.find('-');
  if (dash == std::string_view::npos || id.substr(dash) != "-0" || dash == 0) return false;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + dash, value);
  if (ec != std::errc() || end != id.data() + dash) return false;
  *seq = value;
  return true;
}

TailStep next_tail_step(uint64_t last_delivered, uint64_t first_seq) {
  return first_seq == last_delivered + 1 ? TailStep::kDeliver : TailStep::kResync;
}

size_t append_allowance(uint64_t appended, uint64_t tailed, size_t history, size_t max_batch) {
  const uint64_t window = std::max<uint64_t>(history / 2, 1);
  const uint64_t unread = appended > tailed ? appended - tailed : 0;
  if (unread >= window) return 0;
  return static_cast<size_t>(std::min<uint64_t>(std::max<size_t>(max_batch, 1), window - unread));
}

std::vector<std::string> machine_replay(const GroupSnapshot& snapshot) {
  std::vector<const StoredMachine*> order;
  order.reserve(snapshot.machines.size());
  for (const StoredMachine& m : snapshot.machines) order.push_back(&m);
  std::sort(order.begin(), order.end(),
            [](const StoredMachine* a, const StoredMachine* b) { return a->seq < b->seq; });
  std::vector<std::string> out;
  out.reserve(order.size());
  for (const StoredMachine* m : order) {
    auto event = nlohmann::json::parse(m->event, nullptr, false);
    if (!event.is_object()) continue;
    if (!m->former_state.empty() && !event.contains("previous_state")) {
      auto former = nlohmann::json::parse(m->former_state, nullptr, false);
      if (!former.is_discarded()) {
        out.push_back(nlohmann::json{{"type", "state_change"},
                                     {"machine_id", event.value("machine_id", "")},
                                     {"state", former}}
                          .dump());
      }
    }
    out.push_back(m->event);
  }
  return out;
}

}  // namespace smws::redis
