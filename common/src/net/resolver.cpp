// SPDX-License-Identifier: Apache-2.0
#include "smws/net/resolver.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "smws/host_address.h"

namespace smws::net {
namespace {

// What the lookup thread and the waiting caller share; the thread keeps it
// alive after a caller that gave up has returned.
struct Lookup {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;      // guarded by mutex
  Status status;          // guarded by mutex
  std::string address;    // guarded by mutex
};

}  // namespace

Status system_lookup(const std::string& host, std::string* address) {
  std::string error;
  if (!lookup_host_address(host, address, &error)) {
    return Status::Error(Status::kUnavailable, "cannot resolve " + host + ": " + error);
  }
  return Status::Ok();
}

Status resolve_host(const std::string& host, double timeout_s, std::string* address, const LookupFn& lookup) {
  if (is_numeric_host(host)) {
    *address = host;
    return Status::Ok();
  }
  auto shared = std::make_shared<Lookup>();
  try {
    std::thread([shared, host, lookup] {
      std::string found;
      Status status = lookup(host, &found);
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->status = std::move(status);
      shared->address = std::move(found);
      shared->done = true;
      shared->done_cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    return Status::Error(Status::kInternal, "cannot start a resolver thread: " + std::string(e.what()));
  }
  std::unique_lock<std::mutex> lock(shared->mutex);
  if (!shared->done_cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return shared->done; })) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%.3g s", timeout_s);
    return Status::Error(Status::kTimedOut, "DNS lookup of " + host + " did not answer within " + limit +
                                                " (--connect-timeout)");
  }
  if (!shared->status.ok()) return shared->status;
  *address = shared->address;
  return Status::Ok();
}

}  // namespace smws::net
