// SPDX-License-Identifier: Apache-2.0
// RelayState — what more than one thread of ws-relay touches, and the one
// lock that guards it. The parts of the relay (stdin_source.h,
// decisions.h, audience.h, group_member.h) each hold a reference to the
// one RelayState that relay::Relay owns; the members below marked
// GUARDED_BY(mu) are its whole lock list, and clang checks every access
// (thread_annotations.h, the `thread_safety` test).
//
// Threads: the loop thread (WsServer::run) takes mu for everything here;
// so does the stdin thread (only when stdin is a regular file) and the
// output thread (only to post an audit outcome). Nothing that waits on a
// client or on I/O is done while mu is held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/hitl.h"
#include "smws/net/send_queue.h"
#include "smws/redis_stream.h"
#include "smws/relay_hub.h"
#include "smws/thread_annotations.h"

namespace smws::relay {

// Longest stdin line accepted. Events are at most 64 KiB as datagrams; 1 MiB
// leaves room for events built by other producers while bounding memory.
constexpr size_t kMaxStdinLine = 1 << 20;

// One broadcast and what its audience is chosen by.
struct Outgoing {
  net::Frame frame;
  std::string type;
  std::optional<std::string> machine;
};

// --audit: the stdin interrupt whose record is being written; stdin is not
// read on until it is published or refused (decisions.h).
struct HeldInterrupt {
  nlohmann::json event;  // as it will be broadcast (interrupt_id, timeout filled in)
  uint64_t line = 0;     // its stdin line, for the warning when it is refused
};

// The output thread's answer for one record: written and fsynced, or why not.
struct AuditOutcome {
  uint64_t ticket;    // 0: a record nobody waits for (an interrupt)
  std::string error;  // empty: written and fsynced
};

struct RelayState {
  RelayState(RelayHub initial_hub, HitlOptions hitl_options)
      : hub(std::move(initial_hub)), hitl(hitl_options) {}

  Mutex mu;
  // The protocol state (seq, machines, history) and the pending interrupts.
  RelayHub hub GUARDED_BY(mu);
  HitlTable hitl GUARDED_BY(mu);
  // Broadcasts the stdin thread produced, for the loop to send.
  std::vector<Outgoing> inbox GUARDED_BY(mu);
  bool stdin_eof GUARDED_BY(mu) = false;
  // --audit: set by whichever thread reads stdin, cleared by the loop.
  std::optional<HeldInterrupt> held_interrupt GUARDED_BY(mu);
  // Posted by the output thread, taken by the loop (Decisions::handle_outcomes).
  std::vector<AuditOutcome> audit_outcomes GUARDED_BY(mu);
  // --redis: stdin events for the stream, from whichever thread read stdin.
  std::vector<redis::Outgoing> group_inbox GUARDED_BY(mu);
  // --redis: interrupts this relay read from stdin and whose decision it
  // must print and send to reply_to: interrupt_id -> reply_to. Bounded by
  // the pending table (entries leave with their decision).
  std::unordered_map<std::string, std::string> origin GUARDED_BY(mu);
  uint64_t next_interrupt GUARDED_BY(mu) = 1;
  std::string last_interrupt_id GUARDED_BY(mu);
};

}  // namespace smws::relay
