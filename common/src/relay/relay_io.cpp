// SPDX-License-Identifier: Apache-2.0
// ServerIo: RelayIo over a WsServer and the output thread (relay_io.h).
#include "smws/relay/relay_io.h"

#include "smws/hitl.h"
#include "smws/log.h"
#include "smws/output_thread.h"
#include "smws/relay/relay_state.h"

namespace smws::relay {

void ServerIo::broadcast(const net::Frame& frame) { server_->broadcast(frame); }

void ServerIo::send(net::ClientId id, const net::Frame& frame) { server_->send(id, frame); }

void ServerIo::send_text(net::ClientId id, const std::string& text) { server_->send_text(id, text); }

void ServerIo::join(net::ClientId id, const std::vector<net::Frame>& first) { server_->join(id, first); }

void ServerIo::close(net::ClientId id, uint16_t code, const std::string& reason) {
  server_->close(id, code, reason);
}

void ServerIo::print(std::string line) { output_->line(std::move(line)); }

void ServerIo::reply(const std::string& to, const std::string& text) {
  // A non-blocking sendto(2): a full or absent socket is reported, never waited on.
  std::string err = send_reply_datagram(to, text);
  if (!err.empty()) log::warn(err);
}

void ServerIo::record(nlohmann::json record, uint64_t ticket) {
  RelayState* state = state_;
  net::WsServer* server = server_;
  output_->record(std::move(record), [state, server, ticket](const std::string& error) {
    // On the output thread: post, then wake the loop (never act here).
    {
      MutexLock lock(&state->mu);
      state->audit_outcomes.push_back(AuditOutcome{ticket, error});
    }
    server->wake();
  });
}

void ServerIo::wake() { server_->wake(); }

bool ServerIo::watch(int fd, std::function<void()> on_readable) {
  return server_->watch(fd, std::move(on_readable));
}

void ServerIo::unwatch(int fd) { server_->unwatch(fd); }

void ServerIo::begin_shutdown(double seconds) { server_->begin_shutdown(seconds); }

}  // namespace smws::relay
