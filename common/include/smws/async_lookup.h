// SPDX-License-Identifier: Apache-2.0
// One host name lookup on a short-lived thread of its own, for callers that
// must not block on getaddrinfo(3): it has no timeout of its own and a DNS
// server that never answers holds it for the resolver's retries (30 s and
// more with the default resolv.conf).
//
// Two callers share it: net::resolve_host() (a blocking caller with a
// deadline: wait_for) and redis::RedisStream (an epoll loop: event_fd() is
// readable once the answer is in). It lives in smws::core because it needs
// nothing but host_address.h and threads: smws::redis reaches it without
// linking smws::net (and POCO), smws::net without linking hiredis.
//
// Threads: the caller's thread owns the AsyncLookup; the lookup thread
// owns only a reference to the shared state and its own copies, so it may
// outlive the AsyncLookup (a caller that gave up), finishing on its own.
// The state's lock (State::mu) is held only to write or read the answer.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "smws/status.h"

namespace smws {

// A lookup: fills *address with a numeric address ("192.0.2.1", "::1") for
// host, or returns why not. Runs on the lookup thread. The seam a test
// replaces with a slow or failing one.
using LookupFn = std::function<Status(const std::string& host, std::string* address)>;

// lookup_host_address() (host_address.h): getaddrinfo(3), IPv4 preferred,
// TCP. kUnavailable "cannot resolve HOST: why" when the name does not resolve.
Status system_lookup(const std::string& host, std::string* address);

class AsyncLookup {
 public:
  AsyncLookup() = default;
  // Starts looking host up with fn on a new thread (an AsyncLookup already
  // started is abandoned first). Not OK: no eventfd or no thread.
  Status start(const std::string& host, LookupFn fn);
  // Forgets the lookup in flight (its thread finishes on its own).
  void reset() { state_.reset(); }
  bool active() const { return state_ != nullptr; }

  // Readable once the answer is in (an eventfd; -1 when not active). The
  // caller's epoll set may watch it; it stays readable until reset().
  int event_fd() const;
  // True once the lookup thread has answered.
  bool done() const;
  // Waits at most timeout_s seconds for the answer; true when it is in.
  bool wait_for(double timeout_s) const;
  // The answer, once done(): the lookup's Status, *address when OK.
  Status result(std::string* address) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace smws
