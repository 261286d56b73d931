// SPDX-License-Identifier: Apache-2.0
#include "smws/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace smws::log {
namespace {

// Written once by init() before any thread starts; read-only afterwards.
std::string g_tool = "smws";
bool g_colour = false;
std::atomic<int> g_verbosity{0};

// One write(2) per line, retried on EINTR; a short write on stderr is not
// worth more (nothing else could be done with the error anyway).
void write_line(const std::string& line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// The asynchronous writer behind AsyncStderr. Never freed: a writer stuck
// in write(2) at exit cannot be joined, and a thread still logging must
// find it alive (it is reachable through g_async, so not a leak report).
class Writer {
 public:
  enum class Mode { kDirect, kAsync, kDropping };

  // Takes the line (moved from) unless the caller must write it itself:
  // then returns true.
  bool push(std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (mode_ == Mode::kDirect) return true;
    if (mode_ == Mode::kDropping || lines_.size() >= max_lines_ ||
        bytes_ + line.size() > max_bytes_) {
      ++dropped_;
      ++unreported_;
      return false;
    }
    bytes_ += line.size();
    lines_.push_back(std::move(line));
    cv_.notify_one();
    return false;
  }

  void start(size_t max_lines, size_t max_bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (mode_ != Mode::kDirect) return;  // one at a time
    max_lines_ = max_lines;
    max_bytes_ = max_bytes;
    mode_ = Mode::kAsync;
    stopping_ = finished_ = false;
    thread_ = std::thread([this] { run(); });
  }

  bool stop(double seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    if (mode_ != Mode::kAsync) return mode_ == Mode::kDirect;
    stopping_ = true;
    cv_.notify_one();
    bool done = cv_done_.wait_for(lock, std::chrono::duration<double>(seconds),
                                  [&] { return finished_; });
    if (!done) {
      mode_ = Mode::kDropping;
      thread_.detach();
      return false;
    }
    mode_ = Mode::kDirect;
    lock.unlock();
    thread_.join();
    return true;
  }

  uint64_t dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !lines_.empty() || unreported_ > 0; });
      if (lines_.empty() && unreported_ == 0 && stopping_) break;
      std::deque<std::string> batch;
      batch.swap(lines_);
      bytes_ = 0;
      uint64_t lost = unreported_;
      unreported_ = 0;
      lock.unlock();
      std::string out;
      for (const std::string& line : batch) out += line;
      if (lost > 0) {
        out += g_tool + ": warning: " + std::to_string(lost) +
               " diagnostic lines dropped: stderr was not being read\n";
      }
      write_line(out);
      lock.lock();
    }
    finished_ = true;
    cv_done_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the thread: lines_ or stopping_
  std::condition_variable cv_done_;  // wakes stop(): finished_
  Mode mode_ = Mode::kDirect;        // GUARDED_BY(mu_)
  std::deque<std::string> lines_;    // GUARDED_BY(mu_)
  size_t bytes_ = 0;                 // GUARDED_BY(mu_): bytes in lines_
  size_t max_lines_ = 0, max_bytes_ = 0;  // GUARDED_BY(mu_)
  uint64_t dropped_ = 0;             // GUARDED_BY(mu_)
  uint64_t unreported_ = 0;          // GUARDED_BY(mu_): dropped, not yet said
  bool stopping_ = false;            // GUARDED_BY(mu_)
  bool finished_ = false;            // GUARDED_BY(mu_)
  std::thread thread_;               // started by start(), ended by stop()
};

Writer& writer() {
  static Writer* w = new Writer;  // see Writer: never freed
  return *w;
}

void emit(const char* colour, std::string_view label, std::string_view message) {
  std::string line;
  line.reserve(g_tool.size() + label.size() + message.size() + 24);
  line += g_tool;
  line += ": ";
  if (!label.empty()) {
    if (g_colour) line += colour;
    line += label;
    if (g_colour) line += "\033[0m";
    line += ": ";
  }
  line += message;
  line += '\n';
  // Each line whole, in one write(2): lines from threads never interleave.
  if (writer().push(line)) write_line(line);
}

}  // namespace

void init(std::string_view tool, int verbosity) {
  g_tool = std::string(tool);
  const char* no_colour = std::getenv("NO_COLOR");
  g_colour = ::isatty(STDERR_FILENO) && (no_colour == nullptr || no_colour[0] == '\0');
  g_verbosity = verbosity;
}

int verbosity() { return g_verbosity; }
const std::string& tool() { return g_tool; }

void error(std::string_view message) { emit("\033[1;31m", "error", message); }

void warn(std::string_view message) {
  if (g_verbosity >= 0) emit("\033[1;33m", "warning", message);
}

void note(int level, std::string_view message) {
  if (g_verbosity >= level) emit("", "", message);
}

std::string errno_text(int err) { return std::strerror(err); }

uint64_t dropped_lines() { return writer().dropped(); }

AsyncStderr::AsyncStderr(size_t max_lines, size_t max_bytes) {
  writer().start(max_lines, max_bytes);
}

AsyncStderr::~AsyncStderr() { stop_async(); }

bool stop_async(double seconds) { return writer().stop(seconds); }

}  // namespace smws::log
