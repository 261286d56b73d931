// SPDX-License-Identifier: Apache-2.0
#include "smws/net/ws_client_thread.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <Poco/Exception.h>
#include <Poco/Net/SocketAddress.h>

#include <algorithm>
#include <cerrno>

#include "smws/duration_text.h"
#include "smws/log.h"

namespace smws::net {
namespace {

using Clock = std::chrono::steady_clock;

// The reader wakes at least this often to check its stall timers.
constexpr int kTimerCheckMs = 1000;

void drain(int fd) {
  char buffer[256];
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
}

void poke(int fd) {
  char byte = 1;
  // A full pipe is readable already; EAGAIN is fine.
  [[maybe_unused]] ssize_t n = ::write(fd, &byte, 1);
}

std::string local_address_of(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return {};
  try {
    return Poco::Net::SocketAddress(reinterpret_cast<const sockaddr*>(&address), length).toString();
  } catch (const Poco::Exception&) {
    return {};
  }
}

}  // namespace

std::unique_ptr<WsClientThread> WsClientThread::open(const WsUrl& url, const WsClientOptions& client,
                                                     WsClientThreadOptions options, HandshakeInfo* info) {
  std::unique_ptr<WsClientThread> self(new WsClientThread());
  *info = self->client_.open(url, client);
  if (info->outcome != HandshakeInfo::Outcome::kOpen) return nullptr;
  self->options_ = std::move(options);
  self->local_address_ = local_address_of(self->client_.fd());
  if (::pipe2(self->wake_out_, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(self->wake_in_, O_CLOEXEC | O_NONBLOCK) != 0) {
    info->outcome = HandshakeInfo::Outcome::kUnreachable;
    info->error = std::string("pipe: ") + log::errno_text(errno);
    return nullptr;
  }
  self->reader_ = std::thread([reader = self.get()] { reader->run(); });
  return self;
}

WsClientThread::~WsClientThread() {
  close();
  for (int fd : {wake_out_[0], wake_out_[1], wake_in_[0], wake_in_[1]})
    if (fd >= 0) ::close(fd);
}

bool WsClientThread::send_text(std::string text) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (close_requested_ || done_) return false;
    outbox_.push_back(std::move(text));
  }
  poke(wake_out_[1]);
  return true;
}

void WsClientThread::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    close_requested_ = true;
  }
  if (wake_out_[1] >= 0) poke(wake_out_[1]);
  if (reader_.joinable()) reader_.join();
}

void WsClientThread::post(WsInbound item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (item.kind == WsInbound::Kind::kMessage && inbox_.size() >= options_.max_inbox) {
      overflow_ = true;
      return;
    }
    inbox_.push_back(std::move(item));
  }
  inbox_cv_.notify_one();
  poke(wake_in_[1]);
}

std::deque<WsInbound> WsClientThread::take(std::chrono::milliseconds timeout) {
  if (timeout.count() > 0) {
    std::unique_lock<std::mutex> lock(mu_);
    inbox_cv_.wait_for(lock, timeout, [&] { return !inbox_.empty(); });
  }
  // Drain the wake pipe before taking: a message posted after the take then
  // leaves the pipe readable, so no wake-up is lost.
  drain(wake_in_[0]);
  std::deque<WsInbound> items;
  std::lock_guard<std::mutex> lock(mu_);
  items.swap(inbox_);
  return items;
}

bool WsClientThread::take_overflow() {
  std::lock_guard<std::mutex> lock(mu_);
  bool was = overflow_;
  overflow_ = false;
  return was;
}

void WsClientThread::run() {
  const std::string& peer = options_.peer_name;
  std::string why;       // how the connection ended, when it was not our close
  std::string error;
  bool close_sent = false;
  Clock::time_point close_deadline{};
  Clock::time_point last_read = Clock::now();
  Clock::time_point last_write = Clock::now();
  for (;;) {
    // What the owner queued: messages, then perhaps our close.
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& text : outbox_)
        if (!close_sent) client_.send(ws::Opcode::kText, text);
      outbox_.clear();
      if (close_requested_ && !close_sent) {
        client_.send_close(ws::kCloseNormal, "");
        close_sent = true;
        close_deadline = Clock::now() + kCloseWait;
      }
    }

    // Every frame decoded so far.
    bool finished = false;
    ws::Message message;
    while (!finished) {
      auto status = client_.next(&message);
      if (status == ws::FrameReader::Status::kNeedMore) break;
      if (status == ws::FrameReader::Status::kError) {
        const auto& reader = client_.reader();
        why = peer + " broke the WebSocket protocol (" + std::to_string(reader.error_code()) + " " +
              reader.error_reason() + ")";
        if (!close_sent) client_.send_close(reader.error_code(), reader.error_reason());
        close_sent = true;
        finished = true;
        break;
      }
      switch (message.opcode) {
        case ws::Opcode::kPing:
          if (!close_sent) client_.send(ws::Opcode::kPong, message.payload);
          break;
        case ws::Opcode::kClose: {
          uint16_t code = 0;
          std::string reason;
          if (ws::parse_close_payload(message.payload, &code, &reason)) {
            why = peer + " closed the connection (" + std::to_string(code) + (reason.empty() ? "" : " " + reason) + ")";
            // Echo the code as RFC 6455 §5.5.1 asks, unless we started the
            // closing; a close without a code is answered without one.
            if (!close_sent) {
              if (code == ws::kCloseNoStatus) client_.send(ws::Opcode::kClose, {});
              else client_.send_close(code, "");
            }
          } else {
            why = peer + " sent an invalid close frame";
            if (!close_sent) client_.send_close(ws::kCloseProtocolError, "invalid close frame");
          }
          close_sent = true;
          finished = true;
          break;
        }
        case ws::Opcode::kText: {
          std::string reply;
          bool keep = !options_.filter || options_.filter(message.payload, &reply);
          if (!reply.empty() && !close_sent) client_.send(ws::Opcode::kText, reply);
          if (keep) post(WsInbound{WsInbound::Kind::kMessage, std::move(message.payload), {}});
          break;
        }
        default:  // pongs and binary messages mean nothing here
          break;
      }
    }

    std::size_t queued_before = client_.queued();
    if (!client_.flush(&error)) {
      if (why.empty()) why = "cannot send to " + peer + ": " + error;
      break;
    }
    auto now = Clock::now();
    if (client_.queued() < queued_before || client_.queued() == 0) last_write = now;
    if (finished) break;
    if (close_sent && now >= close_deadline) break;  // our close went unanswered
    if (client_.queued() > 0 && now - last_write > kSendTimeout) {
      why = peer + " has read nothing for " + duration_text(kSendTimeout.count());
      break;
    }
    if ((client_.reader().buffered() > 0 || client_.reader().in_fragmented_message()) &&
        now - last_read > kFrameTimeout) {
      why = peer + " stalled in the middle of a frame";
      break;
    }

    int timeout_ms = client_.has_pending() ? 0 : kTimerCheckMs;
    if (close_sent) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(close_deadline - now).count();
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>(std::max<long long>(0, left)));
    }
    short socket_events = POLLIN | (client_.queued() > 0 ? POLLOUT : 0);
    pollfd fds[2] = {{client_.fd(), socket_events, 0}, {wake_out_[0], POLLIN, 0}};
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      why = std::string("poll: ") + log::errno_text(errno);
      break;
    }
    if (fds[1].revents) drain(wake_out_[0]);
    if ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) || client_.has_pending()) {
      auto io = client_.read_some(&error);
      if (io == WsClient::Io::kData) {
        last_read = Clock::now();
      } else if (io == WsClient::Io::kEof) {
        if (why.empty()) why = peer + " closed the connection without a close frame";
        break;
      } else if (io == WsClient::Io::kReset) {
        if (why.empty()) why = peer + " reset the connection";
        break;
      } else if (io == WsClient::Io::kError) {
        if (why.empty()) why = error;
        break;
      }
    }
  }
  client_.close();
  bool asked = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    asked = close_requested_;
    done_ = true;
  }
  if (!asked) post(WsInbound{WsInbound::Kind::kClosed, {}, why.empty() ? "connection lost" : why});
}

}  // namespace smws::net
