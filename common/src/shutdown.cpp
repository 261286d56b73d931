// SPDX-License-Identifier: Apache-2.0
#include "smws/shutdown.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace smws::shutdown {
namespace {

std::atomic<bool> g_requested{false};
int g_pipe[2] = {-1, -1};

void wake() {
  if (g_pipe[1] >= 0) {
    int saved = errno;  // async-signal-safe: write(2) only, errno preserved
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(g_pipe[1], &c, 1);
    errno = saved;
  }
}

void on_signal(int) {
  g_requested.store(true);
  wake();
}

}  // namespace

void install() {
  if (g_pipe[0] < 0 && ::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    g_pipe[0] = g_pipe[1] = -1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and re-check the flag
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool requested() { return g_requested.load(); }
int fd() { return g_pipe[0]; }

void request() {
  g_requested.store(true);
  wake();
}

}  // namespace smws::shutdown
