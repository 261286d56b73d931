// SPDX-License-Identifier: Apache-2.0
// RelayIo — the one seam between the relay's logic and the world: every
// effect a part of the relay has (a frame to the clients, a line on
// stdout, a reply datagram, an audit record, a watch on the loop) goes
// through it. ServerIo is the real one, over WsServer and the output
// thread; a unit test gives the parts a recording RelayIo instead and reads
// what they did, without sockets (tests/unit/relay_*_test.cpp), the way
// HitlClient returns its effects to hitl-approve.
//
// Threads: the client and loop calls are for the loop thread only (as
// WsServer's are), except wake(), which any thread may call. print(),
// reply() and record() may be called from any thread; the output thread
// writes, so none of them waits on stdout or on an fsync.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/net/send_queue.h"
#include "smws/net/ws_server.h"

namespace smws {
class OutputThread;
}

namespace smws::relay {

struct RelayState;

class RelayIo {
 public:
  virtual ~RelayIo() = default;
  // --- clients (loop thread) ---
  virtual void broadcast(const net::Frame& frame) = 0;
  virtual void send(net::ClientId id, const net::Frame& frame) = 0;
  virtual void send_text(net::ClientId id, const std::string& text) = 0;
  // The client joins the broadcast with these first (WsServer::join).
  virtual void join(net::ClientId id, const std::vector<net::Frame>& first) = 0;
  // Closes the client with this code and reason (a revoked or expired identity).
  virtual void close(net::ClientId id, uint16_t code, const std::string& reason) = 0;
  // --- output (any thread) ---
  virtual void print(std::string line) = 0;  // one stdout line, with its "\n"
  // A decision (or a refusal) as one datagram to a waiting sm-send.
  virtual void reply(const std::string& to, const std::string& text) = 0;
  // An --audit record; its outcome comes back as an AuditOutcome with this
  // ticket in RelayState::audit_outcomes, and the loop is woken.
  virtual void record(nlohmann::json record, uint64_t ticket) = 0;
  // --- the loop ---
  virtual void wake() = 0;  // any thread
  virtual bool watch(int fd, std::function<void()> on_readable) = 0;
  virtual void unwatch(int fd) = 0;
  virtual void begin_shutdown(double seconds) = 0;
};

// The real seam: clients through a WsServer, output through the output thread.
class ServerIo final : public RelayIo {
 public:
  ServerIo(RelayState* state, OutputThread* output) : state_(state), output_(output) {}
  void set_server(net::WsServer* server) { server_ = server; }

  void broadcast(const net::Frame& frame) override;
  void send(net::ClientId id, const net::Frame& frame) override;
  void send_text(net::ClientId id, const std::string& text) override;
  void join(net::ClientId id, const std::vector<net::Frame>& first) override;
  void close(net::ClientId id, uint16_t code, const std::string& reason) override;
  void print(std::string line) override;
  void reply(const std::string& to, const std::string& text) override;
  void record(nlohmann::json record, uint64_t ticket) override;
  void wake() override;
  bool watch(int fd, std::function<void()> on_readable) override;
  void unwatch(int fd) override;
  void begin_shutdown(double seconds) override;

 private:
  RelayState* state_;
  OutputThread* output_;
  net::WsServer* server_ = nullptr;  // set by Relay::attach, before run()
};

}  // namespace smws::relay
