// SPDX-License-Identifier: Apache-2.0
// Reply decoding for the group's stream: hiredis reply trees (redisReply)
// into the types of redis_stream.h. Pure: no I/O, no state, any thread;
// unit-tested with replies built by hiredis's own RESP reader
// (tests/unit/redis_reply_test.cpp).
//
// A reply of the wrong shape is a Status kBadInput naming the command; an
// error reply (REDIS_REPLY_ERROR) is for the caller to look at first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smws/redis_stream.h"
#include "smws/status.h"

struct redisReply;

namespace smws::redis {

// A string, status, error or integer reply as text; "" otherwise or null.
std::string reply_str(const redisReply* r);
// An integer reply, or a string of digits; 0 otherwise.
uint64_t reply_u64(const redisReply* r);

// "<seq>\n<rest>" → seq, rest. false: no newline or not digits.
bool split_seq(const std::string& value, uint64_t* seq, std::string* rest);

// One stream entry [id, [field, value, ...]] with our ID ("<seq>-0") and
// field "e" → seq and event. false for anything else.
bool decode_entry(const redisReply* e, GroupSnapshot::Entry* out);

// The load script's reply. Always the epoch, its start and out->last_seq
// (start: 0 from a script without it); when full also
// the machines, the pending interrupts (in seq order, aged on Redis's clock)
// and the recent entries (oldest first, none above the seq).
Status decode_load(const redisReply* reply, bool full, GroupSnapshot* out);

// An XREAD reply for our one stream: its entries in order (nil: none).
// Entries we did not write are counted in *skipped and left out.
Status decode_xread(const redisReply* reply, std::vector<GroupSnapshot::Entry>* entries, size_t* skipped);

// The append script's reply.
struct AppendReply {
  std::string epoch;
  uint64_t first = 0, last = 0;  // 0, 0 for a duplicate
  bool duplicate = false;        // the batch had been appended already
  bool has_slowest = false;      // the slowest fresh tail came with it
  int64_t slowest = -1;          // -1: no fresh tail reported
};
Status decode_append(const redisReply* reply, AppendReply* out);

// The decide script's reply: *won when this decision was appended.
Status decode_decide(const redisReply* reply, bool* won);

// The report script's reply: the slowest fresh tail (-1: none, or an answer
// of another shape) and the epoch with its start, when Redis has one.
struct ReportReply {
  int64_t slowest = -1;
  bool has_epoch = false;
  std::string epoch;
  uint64_t start = 0;
};
ReportReply decode_report(const redisReply* reply);

// WAIT's reply: the replicas that acknowledged (0 for another shape).
uint64_t decode_wait(const redisReply* reply);

// Sentinel: SENTINEL get-master-addr-by-name's [host, port]. false: nil (the
// Sentinel knows no such master) or another shape.
bool decode_master_addr(const redisReply* reply, std::string* host, int* port);

// Sentinel: a +switch-master message ["message", "+switch-master",
// "<name> <old host> <old port> <new host> <new port>"], or the earlier
// +promoted-slave ["message", "+promoted-slave", "slave <ip:port> <ip>
// <port> @ <name> <master ip> <master port>"] (the replica is the master
// from then on; +switch-master follows once the other replicas are
// reconfigured), for master `name`: the new address. false: another
// message, another master, or a confirmation.
bool decode_switch_master(const redisReply* reply, const std::string& name, std::string* host, int* port);

// ROLE's first element: "master", "slave", "sentinel" ("" for another shape).
std::string decode_role(const redisReply* reply);

// An error reply that means the credentials were refused (WRONGPASS,
// NOAUTH, "invalid password", ...), as opposed to any other refusal.
bool is_auth_refusal(std::string_view message);

}  // namespace smws::redis
