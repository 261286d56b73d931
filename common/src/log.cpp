#include "smws/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace smws::log {
namespace {

// Written once by init() before any thread starts; read-only afterwards.
std::string g_tool = "smws";
bool g_colour = false;
std::atomic<int> g_verbosity{0};

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
  // One write per message; a short write on stderr is not worth retrying
  // beyond EINTR (nothing else could be done with the error anyway).
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

}  // namespace smws::log
