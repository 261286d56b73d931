// SPDX-License-Identifier: Apache-2.0
// OutputThread: the bounded asynchronous line writer behind ws-relay's stdout.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "smws/output_thread.h"

using smws::OutputLimits;
using smws::OutputThread;

namespace {

// A pipe whose read end is drained by a thread of its own once drain() is
// called; collected() returns what was read, after the write end is closed.
struct Pipe {
  int r = -1, w = -1;
  std::string got;
  std::thread reader;
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (w >= 0) ::close(w);
    if (reader.joinable()) reader.join();
    ::close(r);
  }
  // Makes the next write block: fills the pipe's buffer.
  void fill() {
    REQUIRE(::fcntl(w, F_SETFL, O_NONBLOCK) == 0);
    std::string filler(1 << 16, 'f');
    while (::write(w, filler.data(), filler.size()) > 0) {
    }
    REQUIRE(::fcntl(w, F_SETFL, 0) == 0);
  }
  void drain() {
    reader = std::thread([this] {
      char buf[65536];
      ssize_t n;
      while ((n = ::read(r, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    });
  }
  // Call after the OutputThread has stopped: closes the write end (EOF for
  // the drain thread) and returns everything that was read.
  std::string collected() {
    if (!reader.joinable()) drain();
    ::close(w);
    w = -1;
    reader.join();
    return got;
  }
};

}  // namespace

TEST_CASE("lines come out in order, each ended by one newline", "[output_thread]") {
  Pipe pipe;
  {
    OutputThread out(pipe.w, nullptr);
    out.line("{\"a\":1}");
    out.line("{\"b\":2}\n");  // a line that brings its own '\n' gets no second one
    REQUIRE(out.stop());
  }
  CHECK(pipe.collected() == "{\"a\":1}\n{\"b\":2}\n");
}

TEST_CASE("records go to the sink on the output thread, in order, never to the fd",
          "[output_thread]") {
  Pipe pipe;
  std::vector<nlohmann::json> seen;  // written by the output thread, read after stop()
  {
    OutputThread out(pipe.w, [&seen](const nlohmann::json& r) {
      seen.push_back(r);
      return std::string();
    });
    out.record({{"n", 1}});
    out.line("x");
    out.record({{"n", 2}});
    REQUIRE(out.stop());
  }
  REQUIRE(seen.size() == 2);
  CHECK(seen[0]["n"] == 1);
  CHECK(seen[1]["n"] == 2);
  CHECK(pipe.collected() == "x\n");
}

TEST_CASE("without a sink, records are ignored", "[output_thread]") {
  Pipe pipe;
  {
    OutputThread out(pipe.w, nullptr);
    out.record({{"n", 1}});
    REQUIRE(out.stop());
  }
  CHECK(pipe.collected().empty());
}

TEST_CASE("past the line limit a stdout nobody reads drops lines and counts them",
          "[output_thread]") {
  Pipe pipe;
  pipe.fill();  // the thread blocks in write(2) with the first batch it took
  OutputLimits limits;
  limits.max_lines = 10;
  OutputThread out(pipe.w, nullptr, limits);
  // The thread may hold one batch in write(2); at most max_lines more queue up.
  for (int i = 0; i < 100; ++i) out.line("line " + std::to_string(i));
  CHECK(out.dropped() >= 100 - 2 * 10);
  pipe.drain();  // unblocks the writer, so stop() completes
  REQUIRE(out.stop());
}

TEST_CASE("past the byte limit lines are dropped even below the line limit",
          "[output_thread]") {
  Pipe pipe;
  pipe.fill();
  OutputLimits limits;
  limits.max_bytes = 1000;
  OutputThread out(pipe.w, nullptr, limits);
  std::string big(600, 'b');
  for (int i = 0; i < 10; ++i) out.line(big);
  // At most one 600-byte line fits the backlog and at most one more is in
  // the writer's hands: at least 8 of 10 are dropped.
  CHECK(out.dropped() >= 8);
  pipe.drain();
  REQUIRE(out.stop());
}

TEST_CASE("stop() gives up after its timeout when the fd is never read", "[output_thread]") {
  Pipe pipe;
  pipe.fill();
  OutputThread out(pipe.w, nullptr);
  out.line("stuck");
  CHECK_FALSE(out.stop(0.2));
  // Reading the pipe lets the blocked write finish; then stop() succeeds.
  pipe.drain();
  REQUIRE(out.stop());
  CHECK(pipe.collected().find("stuck") != std::string::npos);
}

namespace {

// What RecordDone reported, collected across threads.
struct Outcomes {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<int, std::string>> got;  // GUARDED_BY(mu): (record n, error)
  std::vector<std::thread::id> threads;          // GUARDED_BY(mu): where each was reported

  OutputThread::RecordDone done(int n) {
    return [this, n](const std::string& error) {
      std::lock_guard<std::mutex> lock(mu);
      got.emplace_back(n, error);
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }
  bool wait_for(size_t count) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return got.size() >= count; });
  }
};

}  // namespace

TEST_CASE("each record's outcome is reported after the sink, in order, on the output thread",
          "[output_thread]") {
  Pipe pipe;
  Outcomes outcomes;
  std::vector<int> sunk;  // output thread only, read after stop()
  {
    // Odd records are kept, even ones refused, as an audit log on a full disk would.
    OutputThread out(pipe.w, [&sunk](const nlohmann::json& r) {
      int n = r["n"].get<int>();
      sunk.push_back(n);
      return n % 2 ? std::string() : "audit file A: No space left on device";
    });
    for (int n = 1; n <= 4; ++n) out.record({{"n", n}}, outcomes.done(n));
    out.record({{"n", 5}});  // no one waits for this one: still sunk
    REQUIRE(outcomes.wait_for(4));
    REQUIRE(out.stop());
  }
  CHECK(sunk == std::vector<int>{1, 2, 3, 4, 5});
  REQUIRE(outcomes.got.size() == 4);
  CHECK(outcomes.got[0] == std::make_pair(1, std::string()));
  CHECK(outcomes.got[1] == std::make_pair(2, std::string("audit file A: No space left on device")));
  CHECK(outcomes.got[2].second.empty());
  CHECK(outcomes.got[3].second.find("No space left") != std::string::npos);
  for (std::thread::id t : outcomes.threads) CHECK(t != std::this_thread::get_id());
}

TEST_CASE("without a sink a waited-for record is reported as not kept", "[output_thread]") {
  Pipe pipe;
  Outcomes outcomes;
  {
    OutputThread out(pipe.w, nullptr);
    out.record({{"n", 1}}, outcomes.done(1));
    REQUIRE(outcomes.wait_for(1));
    REQUIRE(out.stop());
  }
  REQUIRE(outcomes.got.size() == 1);
  CHECK(outcomes.got[0].second == OutputThread::kNoSinkError);
  CHECK(pipe.collected().empty());
}

TEST_CASE("a record's outcome may queue the line it unblocks, which then comes out",
          "[output_thread]") {
  // ws-relay prints a decision only once its record is kept: the line is
  // queued from inside RecordDone, on the output thread itself.
  Pipe pipe;
  {
    OutputThread* self = nullptr;
    OutputThread out(pipe.w, [](const nlohmann::json&) { return std::string(); });
    self = &out;
    std::mutex mu;
    std::condition_variable cv;
    bool queued = false;
    out.record({{"n", 1}}, [&](const std::string& error) {
      REQUIRE(error.empty());
      self->line("{\"decided\":1}");
      std::lock_guard<std::mutex> lock(mu);
      queued = true;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return queued; }));
    lock.unlock();
    REQUIRE(out.stop());
  }
  CHECK(pipe.collected() == "{\"decided\":1}\n");
}
