// SPDX-License-Identifier: Apache-2.0
// The terminal side of hitl-approve's interactive mode: raw single-key input,
// colours, $EDITOR, a line of text. Used only by the UI thread.
#pragma once

#include <termios.h>

#include <optional>
#include <string>

namespace smws::hitl_approve {

// Puts the terminal on fd into non-canonical, no-echo mode while alive so a
// keypress arrives without Enter. ISIG stays on: Ctrl-C is still SIGINT and
// ends the tool through smws::shutdown. suspend()/resume() hand the terminal
// back in cooked mode (for $EDITOR and for typing a message).
class RawMode {
 public:
  explicit RawMode(int fd);
  ~RawMode();
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

  bool active() const { return active_; }
  void suspend();
  void resume();

 private:
  int fd_;
  bool active_ = false;
  bool raw_ = false;
  termios saved_{};
};

struct Style {
  bool colour = false;
  std::string bold(const std::string& s) const { return wrap("1", s); }
  std::string dim(const std::string& s) const { return wrap("2", s); }
  std::string red(const std::string& s) const { return wrap("31", s); }
  std::string green(const std::string& s) const { return wrap("32", s); }
  std::string yellow(const std::string& s) const { return wrap("33", s); }
  std::string cyan(const std::string& s) const { return wrap("36", s); }
  std::string wrap(const char* code, const std::string& s) const {
    return colour ? "\033[" + std::string(code) + "m" + s + "\033[0m" : s;
  }
};

// Writes all of text to stdout (unbuffered: the prompt must show at once).
void out(const std::string& text);

// Opens $VISUAL, else $EDITOR, else vi on a temporary file holding text and
// returns the edited content, or nullopt (and error) when the editor could
// not run or exited non-zero. Blocks the calling thread while the editor runs.
std::optional<std::string> edit_text(const std::string& text, std::string& error);

// Reads one line from fd in cooked mode (the caller suspended RawMode);
// nullopt on EOF or shutdown. Not ndjson::LineReader, on purpose: an empty
// line is an answer here ("Enter for none"), which LineReader skips, and
// the bytes after the line are keys for the prompt, so it reads one byte at
// a time and never past the newline.
std::optional<std::string> read_line(int fd);

// "4m 58s", "12s", "1h 3m".
std::string format_duration(double seconds);

}  // namespace smws::hitl_approve
