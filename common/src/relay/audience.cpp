// SPDX-License-Identifier: Apache-2.0
// Audience: filters, greeting, refresh/subscribe, fan-out (audience.h).
// Loop thread only.
#include "smws/relay/audience.h"

#include <algorithm>

#include "smws/log.h"

namespace smws::relay {
namespace {

// A client's `initial` says who the relay takes it for (SPEC "Records":
// "you"), so a page shows decision buttons only where they would count.
// Other messages (history, a filter error) pass unchanged.
std::string with_you(const std::string& payload, const auth::Identity& identity) {
  constexpr std::string_view kInitial = R"({"type":"initial")";
  if (payload.compare(0, kInitial.size(), kInitial) != 0) return payload;
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_object()) return payload;
  j["you"] = identity.to_json();
  return j.dump();
}

}  // namespace

void Audience::on_open(const net::ClientInfo& client, double now, double mono,
                       const auth::Identity& unverified) {
  Peer who;
  if (client.auth && client.auth->admitted) {
    who.identity = client.auth->identity;
    who.address = client.auth->client_address.empty() ? client.peer : client.auth->client_address;
    who.expires = who.identity.monotonic_deadline(now, mono);
  } else {
    who.identity = unverified;
    who.address = client.peer;
  }
  auth::Identity identity = who.identity;
  peers_[client.id] = std::move(who);
  std::optional<uint64_t> since;
  if (const std::string* s = client.request.query_param("since"); s && seq_) {
    since = RelayHub::parse_since(*s);
    if (!since) log::note(1, "client " + client.peer + ": ignoring since=" + *s);
  }
  // Its filter: the route's (or none), with the query's keys replacing the
  // route's. A bad query filter is answered with an error and the client
  // keeps the default view: nothing else changes.
  Filter base;
  if (auto route = routes_.find(client.request.path); route != routes_.end()) {
    base = route->second;
  }
  Waiting w{client.id, client.peer, std::move(identity), since, {}, Status::Ok()};
  w.bad = filter_from_query(client.request.query, base, &w.filter);
  if (holding_) {
    // A group relay before its first load: it joins (and gets its first
    // messages) in serve(), before any event of the group.
    waiting_.push_back(std::move(w));
    return;
  }
  greet(w, now);
}

void Audience::on_close(net::ClientId id) {
  peers_.erase(id);
  subs_.remove(id);
  // A client gone before the group's first load is not greeted.
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                [id](const Waiting& w) { return w.id == id; }),
                 waiting_.end());
}

void Audience::serve(double now) {
  holding_ = false;
  for (const Waiting& w : waiting_) greet(w, now);
  waiting_.clear();
}

void Audience::greet(const Waiting& w, double now) {
  const Filter& filter = w.filter;
  std::vector<Outgoing> earlier;
  std::vector<Payload> first;
  {
    MutexLock lock(&state_->mu);
    earlier.swap(state_->inbox);
    first = state_->hub.on_connect(w.since, now, filter == Filter{} ? nullptr : &filter);
  }
  // Events older than the snapshot go to the clients already there; then
  // the new client joins the index and the broadcast list with its first
  // messages (a filter error, snapshot/history) ahead of the live stream, so
  // it gets every event exactly once.
  fan_out(earlier);
  subs_.set(w.id, filter);
  std::vector<net::Frame> frames;
  frames.reserve(first.size() + 1);
  if (!w.bad.ok()) {
    log::note(1, "client " + w.peer + ": " + w.bad.message);
    frames.push_back(net::make_text_frame(filter_error_message(w.bad)));
  }
  for (const Payload& p : first) frames.push_back(net::make_text_frame(with_you(*p, w.identity)));
  io_->join(w.id, frames);
}

void Audience::fan_out(const Outgoing& out) {
  const size_t clients = subs_.size();
  if (subs_.everyone_gets(out.type)) {
    // The unfiltered path: one pass over the open clients.
    io_->broadcast(out.frame);
    return;
  }
  recipients_.clear();
  subs_.select(out.type, out.machine ? &*out.machine : nullptr, &recipients_);
  for (SubscriberId id : recipients_) io_->send(id, out.frame);
  filtered_out_ += clients - recipients_.size();
}

void Audience::refresh(net::ClientId id, double now) {
  const Peer* who = client(id);
  Payload snap;
  const Filter* filter = subs_.find(id);
  {
    MutexLock lock(&state_->mu);
    snap = state_->hub.snapshot(now, filter);
  }
  // Held to --max-queue: a client asking for snapshots it never reads is a
  // slow client, not a way to grow our memory.
  io_->send(id, net::make_text_frame(who ? with_you(*snap, who->identity) : *snap));
}

void Audience::subscribe(net::ClientId id, const nlohmann::json& message, double now) {
  const Filter* current = subs_.find(id);
  if (!current) return;  // not open (closing)
  Filter filter = *current;
  Status s = apply_subscribe(message, &filter);
  if (!s.ok()) {
    io_->send_text(id, filter_error_message(s));
    return;
  }
  std::vector<Outgoing> earlier;
  std::vector<Payload> view;
  {
    // As in greet: what the stdin thread posted before the view was taken
    // goes out under the old filter first.
    MutexLock lock(&state_->mu);
    earlier.swap(state_->inbox);
    view = state_->hub.on_subscribe(filter, now);
  }
  fan_out(earlier);
  subs_.set(id, std::move(filter));
  // Held to --max-queue like a refresh.
  for (const Payload& p : view) io_->send(id, net::make_text_frame(*p));
}

void Audience::resync(const nlohmann::json& gap, double now) {
  io_->broadcast(net::make_text_frame(gap.dump()));
  MutexLock lock(&state_->mu);
  if (subs_.filtered() == 0) {
    io_->broadcast(net::make_text_frame(*state_->hub.snapshot(now)));
    return;
  }
  for (const auto& [id, who] : peers_) {
    io_->send(id, net::make_text_frame(*state_->hub.snapshot(now, subs_.find(id))));
  }
}

std::string Audience::peer(net::ClientId id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? std::string() : it->second.address;
}

const Peer* Audience::client(net::ClientId id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : &it->second;
}

std::vector<net::ClientId> Audience::expired(double mono) {
  std::vector<net::ClientId> out;
  for (auto& [id, who] : peers_) {
    if (who.expires && mono >= *who.expires) {
      out.push_back(id);
      who.expires.reset();
    }
  }
  return out;
}

std::vector<net::ClientId> Audience::select(const std::function<bool(const Peer&)>& drop) const {
  std::vector<net::ClientId> out;
  for (const auto& [id, who] : peers_) {
    if (drop(who)) out.push_back(id);
  }
  return out;
}

}  // namespace smws::relay
