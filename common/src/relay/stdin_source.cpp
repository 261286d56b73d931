// SPDX-License-Identifier: Apache-2.0
// StdinSource: stdin lines into the hub, on the loop or the stdin thread
// (stdin_source.h).
#include "smws/relay/stdin_source.h"

#include <poll.h>

#include <cerrno>
#include <chrono>

#include "smws/clock.h"
#include "smws/log.h"

namespace smws::relay {

bool StdinSource::ingest_buffered_locked(std::vector<Outgoing>* out) {
  ndjson::LineReader::Line line;
  for (;;) {
    if (state_->held_interrupt) return false;  // --audit: nothing overtakes it
    auto st = reader_.next(&line);
    if (st == ndjson::LineReader::Status::kLine) {
      if (group_) {
        // The group numbers and broadcasts it: to the stream, not to clients.
        IngestResult r = state_->hub.check(line.text, wall_seconds(), line.number);
        if (r.ok()) {
          redis::Outgoing o;
          o.event = *r.payload;
          if (r.type == "interrupt") {
            o.kind = 'i';
            o.key = state_->last_interrupt_id;
          } else if (r.type == "state_change" && r.machine) {
            o.kind = 'm';
            o.key = *r.machine;
            auto dom = nlohmann::json::parse(o.event, nullptr, false);
            if (auto s = dom.is_object() ? dom.find("state") : dom.end(); s != dom.end()) {
              o.state = s->dump();
            }
          }
          state_->group_inbox.push_back(std::move(o));
        } else if (!r.error.empty()) {
          log::warn("stdin " + r.error);
        }
        continue;
      }
      IngestResult r = state_->hub.ingest(line.text, wall_seconds(), line.number);
      if (r.status == IngestResult::Status::kHeld) {
        state_->held_interrupt->line = line.number;
        return false;
      }
      if (r.ok()) {
        out->push_back(Outgoing{net::make_text_frame(*r.payload), std::move(r.type),
                                std::move(r.machine)});
      } else if (!r.error.empty()) {
        log::warn("stdin " + r.error);
      }
    } else if (st == ndjson::LineReader::Status::kTooLong) {
      log::warn("stdin line " + std::to_string(line.number) + ": longer than " +
                std::to_string(kMaxStdinLine) + " bytes; skipped");
    } else {
      return st == ndjson::LineReader::Status::kEof;
    }
  }
}

void StdinSource::read_stdin(int stop_fd) {
  for (;;) {
    bool eof, posted, held;
    {
      // Held across the lines of one read(2) (next() never blocks).
      MutexLock lock(&state_->mu);
      size_t before = state_->inbox.size() + state_->group_inbox.size();
      eof = ingest_buffered_locked(&state_->inbox);
      posted = state_->inbox.size() + state_->group_inbox.size() > before;
      if (eof) state_->stdin_eof = true;
      held = state_->held_interrupt.has_value();  // only this thread sets it
    }
    // One wake-up per read(2), so a burst costs one, not one per line.
    if (posted || eof) io_->wake();
    if (eof) return;
    if (held) {
      // Then the lines read before the hold, before reading more.
      if (!wait_while_held(stop_fd)) return;
      continue;
    }
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0) {
      if (errno != EINTR) break;
    }
    if (fds[1].revents) return;
    if (reader_.fill() == ndjson::LineReader::Fill::kError) {
      log::error("reading stdin: " + log::errno_text(reader_.error()));
      MutexLock lock(&state_->mu);
      state_->stdin_eof = true;
      io_->wake();
      return;
    }
  }
}

bool StdinSource::wait_while_held(int stop_fd) {
  MutexLock lock(&state_->mu);
  while (state_->held_interrupt) {
    // Bounded, so that a stop request is seen while the record is written.
    lock.wait_for(resume_, std::chrono::milliseconds(200));
    pollfd stop{stop_fd, POLLIN, 0};
    if (::poll(&stop, 1, 0) > 0) return false;
  }
  return true;
}

void StdinSource::read_on_loop() {
  on_loop_ = true;
  // Level-triggered and readable: this read(2) does not block.
  bool failed = reader_.fill() == ndjson::LineReader::Fill::kError;
  if (failed) log::error("reading stdin: " + log::errno_text(reader_.error()));
  std::vector<Outgoing> frames;
  bool eof, held;
  {
    MutexLock lock(&state_->mu);
    eof = ingest_buffered_locked(&frames) || failed;
    if (eof) state_->stdin_eof = true;
    held = state_->held_interrupt.has_value();
  }
  audience_->fan_out(frames);
  push_group_();
  if (eof) {
    io_->unwatch(STDIN_FILENO);
    on_eof_();
  } else if (held) {
    // Read on once the interrupt is published or refused (resume()).
    io_->unwatch(STDIN_FILENO);
  }
}

void StdinSource::resume() {
  if (!on_loop_) {
    resume_.notify_all();
    return;
  }
  std::vector<Outgoing> frames;
  bool eof, held;
  {
    MutexLock lock(&state_->mu);
    if (state_->stdin_eof) return;
    eof = ingest_buffered_locked(&frames);
    if (eof) state_->stdin_eof = true;
    held = state_->held_interrupt.has_value();
  }
  audience_->fan_out(frames);
  if (eof) {
    on_eof_();
  } else if (!held && !io_->watch(STDIN_FILENO, [this] { read_on_loop(); })) {
    log::error("stdin: cannot watch it again; no more events are read");
  }
}

}  // namespace smws::relay
