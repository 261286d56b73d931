// SPDX-License-Identifier: Apache-2.0
// The ceiling for bench_datagram.py's ingest figure: the least a sender and a
// receiver can do on the same socket type (AF_UNIX SOCK_DGRAM), batched with
// sendmmsg/recvmmsg, without validating or writing anything.
//
//   raw_dgram_ceiling PATH COUNT SIZE        both ends
//   raw_dgram_ceiling --recv PATH COUNT      only the receiver
//   raw_dgram_ceiling --send PATH COUNT SIZE only the sender (PATH must be bound)
//
// Both ends: forks; the child binds PATH and receives COUNT datagrams, the
// parent sends COUNT datagrams of SIZE bytes (blocking, so none is lost).
// Prints "events=N seconds=S rate=R lost=L" on stdout. The one-sided modes
// pair one of our tools with a minimal peer, to see which end limits a run.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kBatch = 64;

sockaddr_un address(const char* path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  return a;
}

// Receives until COUNT datagrams arrived; writes the count to `report`.
int receive(int fd, long count, int report) {
  std::vector<char> storage(static_cast<size_t>(kBatch) * 2048);
  mmsghdr mm[kBatch];
  iovec iov[kBatch];
  long got = 0;
  while (got < count) {
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = {storage.data() + i * 2048, 2048};
      std::memset(&mm[i], 0, sizeof mm[i]);
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    // Blocks for the first datagram, then takes what is queued.
    int n = ::recvmmsg(fd, mm, kBatch, MSG_WAITFORONE, nullptr);
    if (n > 0) got += n;
  }
  [[maybe_unused]] ssize_t w = ::write(report, &got, sizeof got);
  return 0;
}


void send_all(int sfd, long count, size_t size) {
  // A valid event of exactly `size` bytes (when size >= 24), so the
  // one-sided mode can feed sm-listen.
  std::string payload = "{\"type\":\"raw\",\"p\":\"";
  if (size > payload.size() + 2) payload.append(size - payload.size() - 2, 'x');
  payload += "\"}";
  mmsghdr mm[kBatch];
  iovec iov[kBatch];
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = {payload.data(), payload.size()};
    std::memset(&mm[i], 0, sizeof mm[i]);
    mm[i].msg_hdr.msg_iov = &iov[i];
    mm[i].msg_hdr.msg_iovlen = 1;
  }
  long sent = 0;
  while (sent < count) {
    int want = static_cast<int>(std::min<long>(kBatch, count - sent));
    int n = ::sendmmsg(sfd, mm, want, 0);
    if (n > 0) sent += n;
  }
}

int one_sided(int argc, char** argv) {
  bool recv = std::strcmp(argv[1], "--recv") == 0;
  if ((recv && argc != 4) || (!recv && argc != 5)) return 64;
  const char* path = argv[2];
  long count = std::atol(argv[3]);
  auto addr = address(path);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  if (recv) {
    ::unlink(path);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 73;
    int pipefd[2];
    if (::pipe(pipefd) != 0) return 70;
    std::printf("ready\n");
    std::fflush(stdout);
    receive(fd, count, pipefd[1]);
    ::unlink(path);
    return 0;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 69;
  send_all(fd, count, static_cast<size_t>(std::atol(argv[4])));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--recv") == 0 || std::strcmp(argv[1], "--send") == 0)) {
    return one_sided(argc, argv);
  }
  if (argc != 4) {
    std::fprintf(stderr, "usage: raw_dgram_ceiling PATH COUNT SIZE\n");
    return 64;
  }
  const char* path = argv[1];
  long count = std::atol(argv[2]);
  size_t size = static_cast<size_t>(std::atol(argv[3]));
  ::unlink(path);
  int rfd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  auto addr = address(path);
  if (::bind(rfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("bind");
    return 73;
  }
  int pipefd[2];
  if (::pipe(pipefd) != 0) return 70;

  auto start = std::chrono::steady_clock::now();
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    _exit(receive(rfd, count, pipefd[1]));
  }
  ::close(rfd);
  ::close(pipefd[1]);

  int sfd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  if (::connect(sfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("connect");
    return 69;
  }
  send_all(sfd, count, size);
  long got = 0;
  [[maybe_unused]] ssize_t r = ::read(pipefd[0], &got, sizeof got);
  int status = 0;
  ::waitpid(child, &status, 0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::unlink(path);
  std::printf("events=%ld seconds=%.4f rate=%.0f lost=%ld\n", got, secs, got / secs, count - got);
  return 0;
}
