// SPDX-License-Identifier: Apache-2.0
#include "smws/output_thread.h"

#include <chrono>
#include <cstdlib>

#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/ndjson.h"

namespace smws {

OutputThread::OutputThread(int fd, RecordSink sink, OutputLimits limits)
    : fd_(fd), sink_(std::move(sink)), limits_(limits), thread_([this] { run(); }) {}

OutputThread::~OutputThread() {
  if (!stop()) std::_Exit(kExitOk);  // see stop(); nothing else is left to do
}

void OutputThread::line(std::string line) {
  if (!line.empty() && line.back() == '\n') line.pop_back();
  push(Item{std::move(line), {}, nullptr, false});
}

void OutputThread::record(nlohmann::json record, RecordDone done) {
  // Without a sink a record is only queued when someone waits for its
  // outcome, so that the answer comes from this thread like any other.
  if (sink_ || done) push(Item{{}, std::move(record), std::move(done), true});
}

size_t OutputThread::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

bool OutputThread::stop(double seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!thread_.joinable()) return true;
  stopping_ = true;
  cv_.notify_one();
  bool done = cv_done_.wait_for(lock, std::chrono::duration<double>(seconds),
                                [&] { return finished_; });
  lock.unlock();
  if (!done) return false;
  thread_.join();
  return true;
}

void OutputThread::push(Item item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!item.is_record && (items_.size() >= limits_.max_lines ||
                            queued_bytes_ + item.line.size() > limits_.max_bytes)) {
      if (dropped_++ == 0) log::warn("stdout is not being read: dropping client messages");
      return;
    }
    queued_bytes_ += item.line.size();
    items_.push_back(std::move(item));
  }
  cv_.notify_one();
}

void OutputThread::run() {
  ndjson::Writer out(fd_);
  bool open = true;
  for (;;) {
    std::deque<Item> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !items_.empty(); });
      if (items_.empty() && stopping_) break;
      batch.swap(items_);
      queued_bytes_ = 0;
    }
    // Records first: a decision waits for its record, not for the stdout
    // lines queued beside it (records are never ordered against lines: a
    // decision's line is only queued once its record is done).
    for (Item& item : batch) {
      if (!item.is_record) continue;
      std::string error = sink_ ? sink_(item.record) : std::string(kNoSinkError);
      if (item.done) item.done(error);
    }
    for (Item& item : batch) {
      if (item.is_record) continue;
      if (open && out.write_line(item.line) != ndjson::Writer::Status::kOk) open = false;
    }
    // A lone line reaches the pipe at once; a burst goes in large writes.
    if (open && out.flush() != ndjson::Writer::Status::kOk) {
      open = false;
      log::note(1, "stdout closed; client messages are no longer printed");
    }
  }
  if (open) out.flush();
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  cv_done_.notify_all();
}

}  // namespace smws
