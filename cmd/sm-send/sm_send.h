// SPDX-License-Identifier: Apache-2.0
// sm-send's flags and its run function (SPEC "sm-send").
//
//   sm-send [OPTIONS] TYPE [FIELD ...]   build an event from arguments
//   sm-send [OPTIONS] --json JSON        send a JSON object as is (+timestamp)
//   sm-send [OPTIONS] -                  NDJSON on stdin, one datagram per line
//   sm-send [OPTIONS] --replay FILE|-    a recording, with its events' spacing
//
// Single-threaded. Start-up is a feature (shell loops run it thousands of
// times): no POCO, static link in release builds, three system calls to send.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "smws/cli.h"
#include "smws/event.h"

namespace smws {

struct SmSendOptions {
  std::string type;                 // TYPE, or "-" for stdin mode
  bool type_given = false;          // TYPE was on the command line (even if empty)
  std::vector<std::string> fields;  // FIELD ...
  std::optional<std::string> machine_id;
  std::optional<std::string> state;
  std::optional<std::string> previous_state;
  std::optional<std::string> json;  // --json
  std::string socket;               // --socket (SM_SOCKET, then the default)
  bool strict = false;
  size_t max_size = event::kDefaultMaxSize;
  double wait_reply = -1;           // --wait-reply seconds; < 0 when not given
  std::string reply_dir;            // --reply-dir (SM_REPLY_DIR); "" = choose
  std::optional<std::string> replay;  // --replay FILE, or "-" for stdin
  double speed = 1;                 // --speed: X times faster (> 0)
  double max_gap = -1;              // --max-gap seconds; < 0 when not given
  bool loop = false;                // --loop
  bool keep_timestamps = false;     // --keep-timestamps
  bool replay_flags_given = false;  // --speed or --max-gap was given
  CommonFlags common;
};

// Declares every flag on app (tests parse an argv through it).
void setup_sm_send(CLI::App& app, SmSendOptions& options);

// Sends; returns the exit code (SPEC: 0, 1, 64, 65, 69, 73, 74, 75, 77).
int run_sm_send(const SmSendOptions& options);

}  // namespace smws
