// SPDX-License-Identifier: Apache-2.0
// Raw keys, $EDITOR and line input for hitl-approve's prompt.
#include "terminal.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "smws/log.h"
#include "smws/shutdown.h"

namespace smws::hitl_approve {

RawMode::RawMode(int fd) : fd_(fd) {
  if (::tcgetattr(fd_, &saved_) != 0) return;
  active_ = true;
  resume();
}

RawMode::~RawMode() { suspend(); }

void RawMode::resume() {
  if (!active_ || raw_) return;
  termios raw = saved_;
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (::tcsetattr(fd_, TCSANOW, &raw) == 0) raw_ = true;
}

void RawMode::suspend() {
  if (!active_ || !raw_) return;
  ::tcsetattr(fd_, TCSANOW, &saved_);
  raw_ = false;
}

void out(const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // stdout is gone; the tool notices on its next read of stdin
    }
    done += static_cast<std::size_t>(n);
  }
}

std::optional<std::string> edit_text(const std::string& text, std::string& error) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/hitl-approve-XXXXXX.json";
  int fd = ::mkstemps(path.data(), 5);
  if (fd < 0) {
    error = "cannot create a temporary file: " + log::errno_text(errno);
    return std::nullopt;
  }
  {
    std::size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = path + ": " + log::errno_text(errno);
        ::close(fd);
        ::unlink(path.c_str());
        return std::nullopt;
      }
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  const char* editor = std::getenv("VISUAL");
  if (!editor || !*editor) editor = std::getenv("EDITOR");
  if (!editor || !*editor) editor = "vi";
  pid_t child = ::fork();
  if (child < 0) {
    error = "fork: " + log::errno_text(errno);
    ::unlink(path.c_str());
    return std::nullopt;
  }
  if (child == 0) {
    // The editor string may carry arguments ("code -w"): let sh split it.
    std::string command = std::string(editor) + " \"$1\"";
    ::execl("/bin/sh", "sh", "-c", command.c_str(), "sh", path.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) break;
  }
  std::optional<std::string> result;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    result = buffer.str();
  } else {
    error = std::string("editor '") + editor + "' failed" +
            (WIFEXITED(status) ? " (exit " + std::to_string(WEXITSTATUS(status)) + ")" : "");
  }
  ::unlink(path.c_str());
  return result;
}

std::optional<std::string> read_line(int fd) {
  std::string line;
  while (true) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {shutdown::fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (fds[1].revents) return std::nullopt;
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line += c;
  }
}

std::string format_duration(double seconds) {
  long s = std::lround(std::max(0.0, seconds));
  if (s >= 3600) return std::to_string(s / 3600) + "h " + std::to_string(s % 3600 / 60) + "m";
  if (s >= 60) return std::to_string(s / 60) + "m " + std::to_string(s % 60) + "s";
  return std::to_string(s) + "s";
}

}  // namespace smws::hitl_approve
