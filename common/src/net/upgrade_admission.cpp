// SPDX-License-Identifier: Apache-2.0
#include "smws/net/upgrade_admission.h"

#include <iterator>
#include <optional>

namespace smws::net {

Admission admit_upgrade(const HttpRequest& request, const AdmissionRules& rules,
                        size_t open_clients, bool shutting_down, size_t open_from_address) {
  Admission out;
  if (!is_upgrade_request(request)) {
    out.verdict = Admission::Verdict::kNotUpgrade;
    out.reply = text_reply(426, "this path serves WebSocket only (Upgrade: websocket)");
    out.reply.headers.emplace_back("Upgrade", "websocket");
    return out;
  }
  std::optional<HttpReply> refusal = check_upgrade(request);
  out.reason = RefusalReason::kBadUpgrade;
  if (!refusal && !origin_allowed(request, rules.allow_origins)) {
    refusal = text_reply(403, "origin not allowed: " + *request.header("origin"));
    out.reason = RefusalReason::kOrigin;
  }
  if (!refusal && !token_ok(request, rules.token)) {
    refusal = text_reply(401, "a valid token is required (Authorization: Bearer, subprotocol smws.bearer.TOKEN or ?token=)");
    refusal->headers.emplace_back("WWW-Authenticate", "Bearer");
    out.reason = RefusalReason::kToken;
    out.token_sent = request.header("authorization") || !presented_tokens(request).empty();
  }
  if (!refusal && (open_clients >= rules.max_clients || shutting_down)) {
    refusal = text_reply(503, shutting_down ? "shutting down" : "too many clients");
    refusal->headers.emplace_back("Retry-After", "5");
    out.reason = shutting_down ? RefusalReason::kShuttingDown : RefusalReason::kMaxClients;
  }
  if (!refusal && rules.max_clients_per_address > 0 &&
      open_from_address >= rules.max_clients_per_address) {
    refusal = text_reply(503, "too many clients from this address");
    refusal->headers.emplace_back("Retry-After", "5");
    out.reason = RefusalReason::kMaxClientsPerAddress;
  }
  if (refusal) {
    out.verdict = Admission::Verdict::kRefuse;
    out.reply = std::move(*refusal);
  }
  return out;
}

std::optional<HttpReply> host_refusal(const HttpRequest& request, const HostRule& rule) {
  if (host_allowed(request, rule)) return std::nullopt;
  std::vector<std::string> names;
  if (rule.loopback) names = {"localhost", "127.0.0.1", "[::1]"};
  names.insert(names.end(), rule.allow_hosts.begin(), rule.allow_hosts.end());
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  // The reply goes to the client that sent the Host: no one else reads it.
  return text_reply(421, "this server does not answer to the name '" + host_name(request) +
                             "' (Host); it answers to: " + list);
}

HttpReply handshakes_per_address_refusal() {
  HttpReply r = text_reply(503, "too many connections from this address are in their handshake");
  r.headers.emplace_back("Retry-After", "5");
  return r;
}

const char* refusal_reason_name(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kBadUpgrade: return "bad_upgrade";
    case RefusalReason::kOrigin: return "origin";
    case RefusalReason::kToken: return "token";
    case RefusalReason::kMaxClients: return "max_clients";
    case RefusalReason::kShuttingDown: return "shutting_down";
    case RefusalReason::kNotTls: return "not_tls";
    case RefusalReason::kMaxClientsPerAddress: return "max_clients_per_ip";
    case RefusalReason::kHost: return "host";
    case RefusalReason::kHandshakesPerAddress: return "handshakes_per_ip";
  }
  return "unknown";
}

bool RefusalLog::should_log(const std::string& address, double now, uint64_t* since) {
  auto it = by_address_.find(address);
  if (it == by_address_.end()) {
    if (by_address_.size() >= max_addresses_) {
      for (auto e = by_address_.begin(); e != by_address_.end();) {
        if (now - e->second.logged_at < interval_) {
          ++e;
          continue;
        }
        forget(e->second, now);
        e = by_address_.erase(e);
      }
      if (by_address_.size() >= max_addresses_) {
        for (const auto& kv : by_address_) forget(kv.second, now);
        by_address_.clear();
      }
    }
    by_address_[address] = Entry{now, 0};
    *since = 0;
    return true;
  }
  Entry& e = it->second;
  if (now - e.logged_at < interval_) {
    ++e.suppressed;
    return false;
  }
  *since = e.suppressed;
  e = Entry{now, 0};
  return true;
}

void RefusalLog::forget(const Entry& e, double now) {
  if (e.suppressed == 0) return;
  if (forgotten_.refused == 0) {
    forgotten_ = RefusalSummary{std::string(), 0, 0};
    forgotten_since_ = now;
  }
  forgotten_.refused += e.suppressed;
  ++forgotten_.addresses;
}

std::vector<RefusalSummary> RefusalLog::take_due(double now) {
  std::vector<RefusalSummary> due;
  for (auto& [address, e] : by_address_) {
    if (e.suppressed > 0 && now - e.logged_at >= interval_) {
      due.push_back(RefusalSummary{address, e.suppressed, 1});
      e = Entry{now, 0};
    }
  }
  if (forgotten_.refused > 0 && now - forgotten_since_ >= interval_) {
    due.push_back(forgotten_);
    forgotten_ = RefusalSummary{};
  }
  return due;
}

std::string address_of_peer(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    size_t close = peer.find(']');
    return std::string(peer.substr(1, close == std::string_view::npos ? peer.size() - 1 : close - 1));
  }
  size_t colon = peer.rfind(':');
  return std::string(colon == std::string_view::npos ? peer : peer.substr(0, colon));
}

}  // namespace smws::net
