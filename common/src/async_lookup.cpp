// SPDX-License-Identifier: Apache-2.0
#include "smws/async_lookup.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "smws/host_address.h"

namespace smws {

// Shared by the caller and the lookup thread; whichever lets go last closes
// the eventfd. The thread writes the answer under mu, then signals both the
// condition variable and the eventfd, once.
struct AsyncLookup::State {
  int event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  mutable std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;     // guarded by mu
  Status status;         // guarded by mu
  std::string address;   // guarded by mu
  ~State() {
    if (event_fd >= 0) ::close(event_fd);
  }
};

Status system_lookup(const std::string& host, std::string* address) {
  std::string error;
  if (!lookup_host_address(host, address, &error)) {
    return Status::Error(Status::kUnavailable, "cannot resolve " + host + ": " + error);
  }
  return Status::Ok();
}

Status AsyncLookup::start(const std::string& host, LookupFn fn) {
  state_.reset();
  auto state = std::make_shared<State>();
  if (state->event_fd < 0) {
    return Status::Error(Status::kSystem, errno, "cannot resolve " + host + ": eventfd: " + std::strerror(errno));
  }
  try {
    // Owns only its copies and the shared state: it may outlive us.
    std::thread([state, host, fn = std::move(fn)] {
      std::string found;
      Status status = fn(host, &found);
      {
        std::lock_guard<std::mutex> lock(state->mu);
        state->status = std::move(status);
        state->address = std::move(found);
        state->done = true;
      }
      state->done_cv.notify_all();
      uint64_t one = 1;
      (void)!::write(state->event_fd, &one, sizeof one);
    }).detach();
  } catch (const std::system_error& e) {
    return Status::Error(Status::kInternal, "cannot start a resolver thread: " + std::string(e.what()));
  }
  state_ = std::move(state);
  return Status::Ok();
}

int AsyncLookup::event_fd() const { return state_ ? state_->event_fd : -1; }

bool AsyncLookup::done() const {
  if (!state_) return false;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

bool AsyncLookup::wait_for(double timeout_s) const {
  if (!state_) return false;
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->done_cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return state_->done; });
}

Status AsyncLookup::result(std::string* address) const {
  if (!state_) return Status::Error(Status::kInternal, "no lookup started");
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->done) return Status::Error(Status::kInternal, "the lookup has not answered yet");
  if (state_->status.ok()) *address = state_->address;
  return state_->status;
}

}  // namespace smws
