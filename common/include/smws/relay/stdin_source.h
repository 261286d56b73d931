// SPDX-License-Identifier: Apache-2.0
// StdinSource — ws-relay's stdin: NDJSON lines into the hub, each broadcast
// frame encoded once. Exactly one thread reads it:
//   the loop thread, when epoll can watch fd 0 (a pipe, socket or terminal:
//     the usual `sm-listen | ws-relay`): one read(2) per readiness, each
//     line to the hub, the frames straight to the audience. That saves a
//     thread hop (a wake-up) per event, most of the latency on a busy machine.
//   the stdin thread, when stdin is a regular file (epoll refuses those):
//     read_stdin() does the same but appends the frames to
//     RelayState::inbox and wakes the loop. It never waits on a client.
// With --redis the lines go to RelayState::group_inbox instead (the group
// numbers and broadcasts them) and push_group() hands them to the stream.
// With --audit an interrupt holds stdin until its record is written
// (decisions.h): the loop unwatches fd 0; the stdin thread waits on
// resume(), with a bounded wait so that a stop request is seen.
#pragma once

#include <condition_variable>
#include <functional>

#include <unistd.h>

#include "smws/ndjson.h"
#include "smws/relay/audience.h"
#include "smws/relay/relay_io.h"
#include "smws/relay/relay_state.h"

namespace smws::relay {

class StdinSource {
 public:
  // group: lines go to the group's stream. push_group: hands
  // RelayState::group_inbox to the stream (loop thread). on_eof: stdin
  // ended (loop thread).
  StdinSource(RelayState* state, RelayIo* io, Audience* audience, bool group,
              std::function<void()> push_group, std::function<void()> on_eof)
      : state_(state), io_(io), audience_(audience), group_(group),
        push_group_(std::move(push_group)), on_eof_(std::move(on_eof)) {}

  void read_stdin(int stop_fd);  // the stdin thread's body
  void read_on_loop();           // loop thread: the watch callback for fd 0
  // Loop thread, after a held interrupt was published or refused: hands
  // the buffered lines on, then watches fd 0 again unless an interrupt is
  // held or stdin ended. Or, when the stdin thread reads, wakes it.
  void resume();

 private:
  // Hands every complete buffered line to the hub and appends the frames
  // to broadcast to *out. True once stdin has ended.
  bool ingest_buffered_locked(std::vector<Outgoing>* out) REQUIRES(state_->mu);
  // Stdin thread: waits while an interrupt is held; false when stop_fd
  // asks the thread to end meanwhile.
  bool wait_while_held(int stop_fd);

  RelayState* state_;
  RelayIo* io_;
  Audience* audience_;
  const bool group_;
  std::function<void()> push_group_;
  std::function<void()> on_eof_;
  // Owned by whichever thread reads stdin (see above).
  ndjson::LineReader reader_{STDIN_FILENO, kMaxStdinLine};
  bool on_loop_ = false;                 // loop thread: fd 0 is read by the loop
  std::condition_variable resume_;       // the stdin thread waits here while one is held
};

}  // namespace smws::relay
