#include "smws/net/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

namespace smws::net {
namespace {

bool is_numeric(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

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
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    return Status::Error(Status::kUnavailable, "cannot resolve " + host + ": " + ::gai_strerror(rc));
  }
  const addrinfo* pick = nullptr;
  for (const addrinfo* a = list; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
    if (!pick && a->ai_family == AF_INET6) pick = a;
  }
  char text[INET6_ADDRSTRLEN] = "";
  if (pick && pick->ai_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr, text, sizeof text);
  } else if (pick) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr, text, sizeof text);
  }
  ::freeaddrinfo(list);
  if (text[0] == '\0') return Status::Error(Status::kUnavailable, "cannot resolve " + host + ": no IPv4 or IPv6 address");
  *address = text;
  return Status::Ok();
}

Status resolve_host(const std::string& host, double timeout_s, std::string* address, const LookupFn& lookup) {
  if (is_numeric(host)) {
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
