// SPDX-License-Identifier: Apache-2.0
// Name resolution bounded by --connect-timeout (smws/net/resolver.h): a
// lookup that hangs must not hang the probe.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "smws/net/resolver.h"

using namespace smws;

TEST_CASE("a numeric address needs no lookup", "[probe][resolver]") {
  std::string address;
  bool called = false;
  auto lookup = [&](const std::string&, std::string*) {
    called = true;
    return Status::Ok();
  };
  CHECK(net::resolve_host("127.0.0.1", 1, &address, lookup).ok());
  CHECK(address == "127.0.0.1");
  CHECK(net::resolve_host("::1", 1, &address, lookup).ok());
  CHECK(address == "::1");
  CHECK_FALSE(called);
}

TEST_CASE("a lookup that does not answer in time is a timeout naming the host and the limit", "[probe][resolver]") {
  // The fake resolver blocks until the test releases it, after resolve_host
  // has given up: the caller must not wait for it.
  struct Gate {
    std::mutex mutex;
    std::condition_variable cv;
    bool open = false;
    bool returned = false;  // the lookup has answered
  };
  auto gate = std::make_shared<Gate>();
  auto hanging = [gate](const std::string&, std::string* address) {
    std::unique_lock<std::mutex> lock(gate->mutex);
    gate->cv.wait_for(lock, std::chrono::seconds(30), [&] { return gate->open; });
    gate->returned = true;
    *address = "192.0.2.1";
    return Status::Ok();
  };
  std::string address;
  Status s = net::resolve_host("slow.example", 0.2, &address, hanging);
  CHECK(s.code == Status::kTimedOut);
  CHECK(s.message.find("slow.example") != std::string::npos);
  CHECK(s.message.find("0.2 s") != std::string::npos);
  CHECK(address.empty());
  {
    std::lock_guard<std::mutex> lock(gate->mutex);
    CHECK_FALSE(gate->returned);  // the deadline, not the lookup, ended the wait
    gate->open = true;
  }
  gate->cv.notify_all();
}

TEST_CASE("a lookup's failure and answer are passed through", "[probe][resolver]") {
  std::string address;
  auto fails = [](const std::string& host, std::string*) {
    return Status::Error(Status::kUnavailable, "cannot resolve " + host + ": Name or service not known");
  };
  Status s = net::resolve_host("nowhere.invalid", 1, &address, fails);
  CHECK(s.code == Status::kUnavailable);
  CHECK(s.message.find("nowhere.invalid") != std::string::npos);
  auto answers = [](const std::string&, std::string* a) {
    *a = "10.0.0.7";
    return Status::Ok();
  };
  CHECK(net::resolve_host("db.internal", 1, &address, answers).ok());
  CHECK(address == "10.0.0.7");
}

TEST_CASE("localhost resolves through the system resolver", "[probe][resolver]") {
  std::string address;
  Status s = net::resolve_host("localhost", 5, &address);
  REQUIRE(s.ok());
  CHECK((address == "127.0.0.1" || address == "::1"));
}
