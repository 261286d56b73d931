// OutputThread: a bounded, asynchronous line writer. Producers on any thread
// hand it NDJSON lines (for an fd, usually stdout) and records (for a sink,
// usually the --audit file, which fsyncs); one thread of its own writes them,
// so neither a full pipe nor an fsync can stall the caller (ws-relay's event
// loop). docs/architecture.md, "Threads, queues and locks".
//
// Threads
//   any thread    line(), record(): never block beyond the queue's lock.
//   owner thread  stop() (once, at exit), then the destructor.
//   own thread    writes lines with ndjson::Writer (flushing at the end of
//                 each batch: a lone line reaches the pipe at once) and calls
//                 the record sink.
//
// Bounded: past max_lines lines or max_bytes bytes waiting, new lines are
// dropped, counted (dropped()) and warned about once. Records are never
// dropped: they are interrupts and decisions, a few per human action.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace smws {

struct OutputLimits {
  // A reader that stops reading our stdout must not grow memory without
  // bound. The byte limit matters because one line can be a whole client
  // message (1 MiB by default): 100,000 lines alone would allow ~100 GB.
  size_t max_lines = 100000;
  size_t max_bytes = 64 << 20;
};

class OutputThread {
 public:
  // Called on the output thread for each record(), in order.
  using RecordSink = std::function<void(const nlohmann::json& record)>;

  // fd: where lines go (not owned). sink: may be empty (records are ignored).
  OutputThread(int fd, RecordSink sink, OutputLimits limits = {});
  // Calls stop(); if that times out, ends the process with _Exit(0) (the
  // thread is stuck in write(2) and cannot be joined).
  ~OutputThread();
  OutputThread(const OutputThread&) = delete;
  OutputThread& operator=(const OutputThread&) = delete;

  // line: one NDJSON line, with or without its '\n'.
  void line(std::string line);
  void record(nlohmann::json record);

  // Writes what is queued, then ends the thread. Returns false when that did
  // not finish within `seconds` (the fd is a pipe nobody reads): the thread
  // is then left blocked in write(2) and the caller must _exit.
  bool stop(double seconds = 2.0);

  // Lines refused because the backlog was full.
  size_t dropped() const;

 private:
  struct Item {
    std::string line;
    nlohmann::json record;
    bool is_record = false;
  };

  void push(Item item);
  void run();

  const int fd_;
  const RecordSink sink_;
  const OutputLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // wakes the thread: items_ or stopping_
  std::condition_variable cv_done_;  // wakes stop(): finished_
  std::deque<Item> items_;    // GUARDED_BY(mu_)
  size_t queued_bytes_ = 0;   // GUARDED_BY(mu_): bytes of the lines in items_
  size_t dropped_ = 0;        // GUARDED_BY(mu_)
  bool stopping_ = false;     // GUARDED_BY(mu_)
  bool finished_ = false;     // GUARDED_BY(mu_)
  std::thread thread_;        // last: starts after the members it uses
};

}  // namespace smws
