// SPDX-License-Identifier: Apache-2.0
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
//                 each batch: a lone line reaches the pipe at once), calls
//                 the record sink, then each record's RecordDone with the
//                 sink's answer. The records of a batch are handled before
//                 its lines, so a record waits for a stdout write only when
//                 the thread is already blocked in one (a full pipe).
//
// Bounded: past max_lines lines or max_bytes bytes waiting, new lines are
// dropped, counted (dropped()) and warned about once. Records are never
// dropped: they are interrupts and decisions, a few per human action.
//
// Durable-before-acknowledged (ws-relay --audit): the producer hands a
// record with a RecordDone, and acts on the outcome only when RecordDone
// reports it (ws-relay posts it to its loop through the loop's wake-up);
// nothing in the producer waits for the fsync.
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
  // Called on the output thread for each record(), in order. Returns an
  // empty string when the record is kept (for the audit log: written and
  // fsynced), else why not ("audit file PATH: No space left on device").
  using RecordSink = std::function<std::string(const nlohmann::json& record)>;
  // Called on the output thread right after the sink, with its answer. Must
  // not call back into this OutputThread's stop() (it may push more items).
  using RecordDone = std::function<void(const std::string& error)>;

  // fd: where lines go (not owned). sink: may be empty: records are then
  // not kept, and a record's RecordDone is told so with kNoSinkError.
  OutputThread(int fd, RecordSink sink, OutputLimits limits = {});
  // Calls stop(); if that times out, ends the process with _Exit(0) (the
  // thread is stuck in write(2) and cannot be joined).
  ~OutputThread();
  OutputThread(const OutputThread&) = delete;
  OutputThread& operator=(const OutputThread&) = delete;

  // line: one NDJSON line, with or without its '\n'.
  void line(std::string line);
  // done (optional) learns whether the sink kept the record.
  void record(nlohmann::json record, RecordDone done = nullptr);

  // What RecordDone gets for a record handed to an OutputThread without a sink.
  static constexpr const char* kNoSinkError = "records are not kept (no record sink)";

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
    RecordDone done;
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
