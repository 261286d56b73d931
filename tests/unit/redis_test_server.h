// SPDX-License-Identifier: Apache-2.0
// A real redis-server for unit tests: started on a free 127.0.0.1 port with
// a temp dir, no persistence unless asked, stopped by PID. Waits for its
// "Ready to accept connections" line (with a timeout), not for a sleep.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

namespace smws::test {

inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}) : port_(free_port()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/smws-redis-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    int pipefd[2];
    if (::pipe(pipefd) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> args{"redis-server", "--port", std::to_string(port_),
                                  "--bind", "127.0.0.1", "--dir", dir_, "--save", "",
                                  "--appendonly", "no", "--daemonize", "no"};
    for (auto& e : extra) args.push_back(e);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(pipefd[1], 1);
      ::close(pipefd[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    ::close(pipefd[1]);
    out_ = pipefd[0];
    std::string seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (seen.find("Ready to accept connections") == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now()).count();
      pollfd p{out_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        throw std::runtime_error("redis-server did not start: " + seen);
      }
      char buf[4096];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) throw std::runtime_error("redis-server exited: " + seen);
      seen.append(buf, static_cast<size_t>(n));
    }
    // Keep its stdout drained by nobody: it writes little after start-up,
    // and the pipe is closed with the server.
  }
  ~RedisServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGCONT);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    std::string cmd = "rm -rf '" + dir_ + "'";
    [[maybe_unused]] int rc = std::system(cmd.c_str());
  }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // A blocking client for checking what the scripts left behind.
  redisContext* client() {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (!c || c->err) throw std::runtime_error("cannot connect to the test redis");
    return c;
  }

 private:
  uint16_t port_;
  std::string dir_;
  pid_t pid_ = -1;
  int out_ = -1;
};

}  // namespace smws::test
