// sm-send --replay's pure logic (SPEC "sm-send"): when each recorded event is
// due, and what each line of a recording is. No clock, no I/O: the sender
// reads the lines, asks for offsets and keeps its own steady-clock start.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "smws/event.h"

namespace smws::replay {

// Offsets (seconds after the replay's start) at which the events of a
// recording are due. Each offset is the recording's elapsed time so far
// divided by the speed, and that elapsed time is a running sum of the
// recorded gaps (each clamped by max_gap), so a sender that sleeps until
// start + offset never accumulates drift, however long the file.
//   - a gap is the difference between an event's timestamp and the previous
//     stamped event's; a backwards step (out-of-order stamps) counts as 0;
//   - an event without a numeric timestamp is due at the previous offset
//     (right after the event before it), and does not move the reference;
//   - the first stamped event of a pass is due at the current offset.
class Schedule {
 public:
  // speed > 0 (X times faster); max_gap < 0 means no limit.
  Schedule(double speed, double max_gap) : speed_(speed), max_gap_(max_gap) {}

  double next(std::optional<double> timestamp);

  // A new pass (--loop): its first event comes right after the last one of
  // the pass before; offsets keep growing.
  void restart() { have_last_ = false; }

 private:
  double speed_;
  double max_gap_;
  double elapsed_ = 0;  // recorded seconds, gaps clamped, summed
  double last_ = 0;     // the previous stamped event's timestamp
  bool have_last_ = false;
};

// One line of a recording.
enum class LineKind { kBlank, kEvent, kBad };

struct Line {
  LineKind kind = LineKind::kBlank;
  std::string error;                // why it is bad (kBad)
  std::string_view text;            // the trimmed event (kEvent)
  std::optional<double> timestamp;  // its numeric "timestamp", if it has one
  bool has_timestamp = false;       // a top-level "timestamp" key (numeric or not)
  // Where the timestamp value lies in `text` (scan()'s fast path settled it);
  // npos when it has none or only a DOM could say.
  size_t stamp_pos = std::string_view::npos;
  size_t stamp_len = 0;
};

// Classifies bytes (one line, line end removed). *scan is scratch space,
// reused across calls. An event too large for max_size as sent is the
// sender's to judge (it knows the bytes it adds).
void classify(std::string_view bytes, event::Scan* scan, Line* out);

// Appends the datagram for a kEvent line to *out: with its timestamp
// replaced by now_json (or added when it has none), or, with keep, as
// recorded (a timestamp is still added when missing, as sm-send always does).
void build_datagram(std::string* out, const Line& line, std::string_view now_json, bool keep);

}  // namespace smws::replay
