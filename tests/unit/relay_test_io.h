// SPDX-License-Identifier: Apache-2.0
// A RelayIo that records every effect, for the unit tests of the relay's
// parts (relay_*_test.cpp): frames are kept as their text payloads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "smws/relay/relay_io.h"
#include "smws/relay/relay_state.h"

namespace smws::test {

// The payload of an unmasked server text frame (RFC 6455 section 5.2).
inline std::string frame_text(const net::Frame& frame) {
  const std::string& b = *frame;
  size_t len = static_cast<unsigned char>(b[1]) & 0x7f;
  size_t at = len == 126 ? 4 : len == 127 ? 10 : 2;
  return b.substr(at);
}

class RecordingIo : public relay::RelayIo {
 public:
  struct Sent {
    net::ClientId id;
    nlohmann::json message;
  };
  struct Record {
    nlohmann::json record;
    uint64_t ticket;
  };
  std::vector<nlohmann::json> broadcasts;
  std::vector<Sent> sent;  // send() and send_text(), in order
  std::vector<std::pair<net::ClientId, std::vector<nlohmann::json>>> joined;
  std::vector<nlohmann::json> printed;
  std::vector<std::pair<std::string, nlohmann::json>> replies;
  std::vector<Record> records;
  struct Closed {
    net::ClientId id;
    uint16_t code;
    std::string reason;
  };
  std::vector<Closed> closed;
  std::vector<int> watched;
  int wakes = 0;
  double shutdown = -1;

  void broadcast(const net::Frame& frame) override {
    broadcasts.push_back(nlohmann::json::parse(frame_text(frame)));
  }
  void send(net::ClientId id, const net::Frame& frame) override {
    sent.push_back({id, nlohmann::json::parse(frame_text(frame))});
  }
  void send_text(net::ClientId id, const std::string& text) override {
    sent.push_back({id, nlohmann::json::parse(text)});
  }
  void join(net::ClientId id, const std::vector<net::Frame>& first) override {
    std::vector<nlohmann::json> messages;
    for (const net::Frame& f : first) messages.push_back(nlohmann::json::parse(frame_text(f)));
    joined.emplace_back(id, std::move(messages));
  }
  void close(net::ClientId id, uint16_t code, const std::string& reason) override {
    closed.push_back({id, code, reason});
  }
  void print(std::string line) override {
    REQUIRE(!line.empty());
    REQUIRE(line.back() == '\n');
    printed.push_back(nlohmann::json::parse(line));
  }
  void reply(const std::string& to, const std::string& text) override {
    replies.emplace_back(to, nlohmann::json::parse(text));
  }
  void record(nlohmann::json record, uint64_t ticket) override {
    records.push_back({std::move(record), ticket});
  }
  void wake() override { ++wakes; }
  bool watch(int fd, std::function<void()>) override {
    watched.push_back(fd);
    return true;
  }
  void unwatch(int) override {}
  void begin_shutdown(double seconds) override { shutdown = seconds; }

  // What the output thread would post for the record at `index`.
  void post_outcome(relay::RelayState* state, size_t index, std::string error = {}) {
    MutexLock lock(&state->mu);
    state->audit_outcomes.push_back(relay::AuditOutcome{records.at(index).ticket, std::move(error)});
  }
};

}  // namespace smws::test
