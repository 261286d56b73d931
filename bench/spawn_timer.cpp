// SPDX-License-Identifier: Apache-2.0
// Start-up timer for bench_datagram.py: runs a command RUNS times with
// posix_spawn (no shell, no interpreter in between) and prints the median and
// the 10th/90th percentile wall time per run, in microseconds.
//
//   spawn_timer RUNS STDIN_FILE COMMAND [ARG ...]
//
// stdin comes from STDIN_FILE (reopened for each run), stdout and stderr go
// to /dev/null.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: spawn_timer RUNS STDIN_FILE COMMAND [ARG ...]\n");
    return 64;
  }
  int runs = std::atoi(argv[1]);
  const char* input = argv[2];
  std::vector<double> us;
  us.reserve(static_cast<size_t>(runs));
  int failures = 0;
  for (int i = 0; i < runs; ++i) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, input, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    auto start = std::chrono::steady_clock::now();
    pid_t pid;
    if (posix_spawn(&pid, argv[3], &fa, nullptr, argv + 3, environ) != 0) {
      std::perror("posix_spawn");
      return 70;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    auto end = std::chrono::steady_clock::now();
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
    us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<size_t>(q * (us.size() - 1))]; };
  std::printf("median_us=%.1f p10_us=%.1f p90_us=%.1f failures=%d\n", at(0.5), at(0.1), at(0.9),
              failures);
  return failures == 0 ? 0 : 1;
}
