// SPDX-License-Identifier: Apache-2.0
// Pure decoding of the stream's replies (redis_reply.h).
#include "smws/redis_reply.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <utility>

namespace smws::redis {

std::string reply_str(const redisReply* r) {
  if (!r) return {};
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
    return std::string(r->str, r->len);
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  return {};
}

uint64_t reply_u64(const redisReply* r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer < 0 ? 0 : static_cast<uint64_t>(r->integer);
  std::string s = reply_str(r);
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

bool split_seq(const std::string& value, uint64_t* seq, std::string* rest) {
  size_t nl = value.find('\n');
  if (nl == std::string::npos) return false;
  *seq = 0;
  for (size_t i = 0; i < nl; ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
    *seq = *seq * 10 + static_cast<uint64_t>(value[i] - '0');
  }
  *rest = value.substr(nl + 1);
  return true;
}

bool decode_entry(const redisReply* e, GroupSnapshot::Entry* out) {
  if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2) return false;
  if (!parse_entry_id(reply_str(e->element[0]), &out->seq)) return false;
  const redisReply* fields = e->element[1];
  if (!fields || fields->type != REDIS_REPLY_ARRAY) return false;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (reply_str(fields->element[i]) == "e") {
      out->event = reply_str(fields->element[i + 1]);
      return true;
    }
  }
  return false;
}

Status decode_load(const redisReply* reply, bool full, GroupSnapshot* out) {
  const Status bad = Status::Error(Status::kBadInput, "unexpected reply to the load script");
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) return bad;
  out->epoch = reply_str(reply->element[0]);
  out->last_seq = reply_u64(reply->element[1]);
  if (!full) {
    if (reply->elements >= 3) out->start = reply_u64(reply->element[2]);
    return Status::Ok();
  }
  if (reply->elements < 5) return bad;
  if (reply->elements >= 7) out->start = reply_u64(reply->element[6]);
  const redisReply* machines = reply->element[2];
  for (size_t i = 0; machines && i + 1 < machines->elements; i += 2) {
    std::string value = reply_str(machines->element[i + 1]);
    StoredMachine m;
    std::string rest;
    if (!split_seq(value, &m.seq, &rest)) continue;
    size_t nl = rest.find('\n');
    if (nl == std::string::npos) continue;
    m.former_state = rest.substr(0, nl);
    m.event = rest.substr(nl + 1);
    out->machines.push_back(std::move(m));
  }
  const redisReply* pending = reply->element[3];
  const uint64_t now_ms = reply->elements >= 6 ? reply_u64(reply->element[5]) : 0;
  std::vector<std::pair<uint64_t, GroupSnapshot::Pending>> ordered;
  for (size_t i = 0; pending && i + 1 < pending->elements; i += 2) {
    uint64_t s = 0, appended_ms = 0;
    std::string rest;
    if (!split_seq(reply_str(pending->element[i + 1]), &s, &rest)) continue;
    GroupSnapshot::Pending p;
    // "<ms>\n<event>"; an event is an object, so a value without the ms
    // line (written before it existed) starts with '{'.
    if (!rest.empty() && rest[0] != '{') {
      if (!split_seq(rest, &appended_ms, &p.event)) continue;
      if (now_ms > appended_ms) p.age_s = static_cast<double>(now_ms - appended_ms) / 1000.0;
    } else {
      p.event = std::move(rest);
    }
    ordered.emplace_back(s, std::move(p));
  }
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& entry : ordered) out->pending.push_back(std::move(entry.second));
  const redisReply* recent = reply->element[4];
  for (size_t i = recent ? recent->elements : 0; i-- > 0;) {
    GroupSnapshot::Entry e;
    if (decode_entry(recent->element[i], &e) && e.seq <= out->last_seq) out->recent.push_back(std::move(e));
  }
  return Status::Ok();
}

Status decode_xread(const redisReply* reply, std::vector<GroupSnapshot::Entry>* entries, size_t* skipped) {
  *skipped = 0;
  if (reply && reply->type == REDIS_REPLY_NIL) return Status::Ok();
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
      reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements < 2 ||
      reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
    return Status::Error(Status::kBadInput, "unexpected reply to XREAD");
  }
  const redisReply* list = reply->element[0]->element[1];
  entries->reserve(entries->size() + list->elements);
  for (size_t i = 0; i < list->elements; ++i) {
    GroupSnapshot::Entry e;
    if (!decode_entry(list->element[i], &e)) {
      ++*skipped;
      continue;
    }
    entries->push_back(std::move(e));
  }
  return Status::Ok();
}

Status decode_append(const redisReply* reply, AppendReply* out) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4) {
    return Status::Error(Status::kBadInput, "unexpected reply to the append script");
  }
  out->epoch = reply_str(reply->element[0]);
  out->duplicate = reply_u64(reply->element[3]) == 1;
  out->first = reply_u64(reply->element[1]);
  out->last = reply_u64(reply->element[2]);
  out->has_slowest = reply->elements >= 5 && reply->element[4]->type == REDIS_REPLY_INTEGER;
  out->slowest = out->has_slowest ? reply->element[4]->integer : -1;
  return Status::Ok();
}

Status decode_decide(const redisReply* reply, bool* won) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
    *won = false;
    return Status::Error(Status::kBadInput, "unexpected reply to the decide script");
  }
  *won = reply_u64(reply->element[1]) > 0;
  return Status::Ok();
}

ReportReply decode_report(const redisReply* reply) {
  ReportReply out;
  if (reply && reply->type == REDIS_REPLY_INTEGER) out.slowest = reply->integer;
  if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3) {
    if (reply->element[0]->type == REDIS_REPLY_INTEGER) out.slowest = reply->element[0]->integer;
    out.epoch = reply_str(reply->element[1]);
    out.has_epoch = !out.epoch.empty();
    out.start = reply_u64(reply->element[2]);
  }
  return out;
}

uint64_t decode_wait(const redisReply* reply) {
  return reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0 ? static_cast<uint64_t>(reply->integer)
                                                                          : 0;
}

namespace {

bool parse_port(const std::string& text, int* port) {
  if (text.empty() || text.size() > 5) return false;
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 65535) return false;
  *port = v;
  return true;
}

}  // namespace

bool decode_master_addr(const redisReply* reply, std::string* host, int* port) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return false;
  if (reply->element[0]->type != REDIS_REPLY_STRING) return false;
  std::string h = reply_str(reply->element[0]);
  int p = 0;
  if (h.empty() || !parse_port(reply_str(reply->element[1]), &p)) return false;
  *host = std::move(h);
  *port = p;
  return true;
}

bool decode_switch_master(const redisReply* reply, const std::string& name, std::string* host, int* port) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return false;
  if (reply_str(reply->element[0]) != "message") return false;
  const std::string channel = reply_str(reply->element[1]);
  if (channel != "+switch-master" && channel != "+promoted-slave") return false;
  std::vector<std::string> words;
  const std::string text = reply_str(reply->element[2]);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) words.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  int p = 0;
  if (channel == "+promoted-slave") {
    // "slave <ip:port> <ip> <port> @ <master name> <master ip> <master port>"
    if (words.size() != 8 || words[0] != "slave" || words[4] != "@" || words[5] != name) return false;
    if (!parse_port(words[3], &p)) return false;
    *host = words[2];
    *port = p;
    return true;
  }
  // "<name> <old host> <old port> <new host> <new port>"
  if (words.size() != 5 || words[0] != name) return false;
  if (!parse_port(words[4], &p)) return false;
  *host = words[3];
  *port = p;
  return true;
}

std::string decode_role(const redisReply* reply) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) return {};
  return reply_str(reply->element[0]);
}

bool is_auth_refusal(std::string_view msg) {
  return msg.rfind("WRONGPASS", 0) == 0 || msg.rfind("NOAUTH", 0) == 0 ||
         msg.find("AUTH") != std::string_view::npos || msg.find("password") != std::string_view::npos;
}

}  // namespace smws::redis
