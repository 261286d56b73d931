// SPDX-License-Identifier: Apache-2.0
// Unix datagram sockets: bind rules, batched send/receive, flow control.
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "smws/unix_datagram.h"
#include "support.h"

using smws::DatagramBatch;
using smws::SocketStatus;
using smws::UnixDatagramSocket;
using smws::test::TempDir;

namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> receive_all(const UnixDatagramSocket& s, DatagramBatch& batch,
                                     size_t want) {
  std::vector<std::string> got;
  while (got.size() < want) {
    size_t n = 0;
    REQUIRE(batch.receive(s, &n).ok());
    for (size_t i = 0; i < n; ++i) got.emplace_back(batch.message(i));
    if (n == 0) ::usleep(1000);
  }
  return got;
}

}  // namespace

TEST_CASE("bind creates the socket with the mode and close removes it", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  {
    UnixDatagramSocket s;
    REQUIRE(UnixDatagramSocket::bind(path, 0640, &s).ok());
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0640);
  }
  CHECK_FALSE(exists(path));
}

TEST_CASE("a live socket is in use and left alone", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket first, second;
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &first).ok());
  auto st = UnixDatagramSocket::bind(path, 0600, &second);
  CHECK(st.code == SocketStatus::kInUse);
  CHECK(st.message.find("in use") != std::string::npos);
  CHECK(exists(path));
  // The first one still receives.
  UnixDatagramSocket sender;
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  REQUIRE(sender.connect(path).ok());
  REQUIRE(sender.send("{\"type\":\"still\"}").ok());
  DatagramBatch batch(4, 1024);
  CHECK(receive_all(first, batch, 1)[0] == "{\"type\":\"still\"}");
}

TEST_CASE("a stale socket file is replaced", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  {
    // Leave a socket file behind as a killed listener would: bind with raw
    // POSIX and close without unlinking.
    int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);
  }
  REQUIRE(exists(path));
  UnixDatagramSocket s;
  auto st = UnixDatagramSocket::bind(path, 0600, &s);
  CHECK(st.ok());
}

TEST_CASE("a path that is not a socket is refused and never touched", "[dgram]") {
  TempDir dir;
  auto path = dir.file("regular");
  {
    int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "keep me", 7) == 7);
    ::close(fd);
  }
  UnixDatagramSocket s;
  auto st = UnixDatagramSocket::bind(path, 0600, &s);
  CHECK(st.code == SocketStatus::kNotSocket);
  struct stat sb {};
  REQUIRE(::lstat(path.c_str(), &sb) == 0);
  CHECK(S_ISREG(sb.st_mode));
  CHECK(sb.st_size == 7);

  auto d = dir.file("adir");
  REQUIRE(::mkdir(d.c_str(), 0700) == 0);
  CHECK(UnixDatagramSocket::bind(d, 0600, &s).code == SocketStatus::kNotSocket);
}

TEST_CASE("close does not remove a successor's socket at the same path", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket first;
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &first).ok());
  REQUIRE(::unlink(path.c_str()) == 0);
  UnixDatagramSocket second;
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &second).ok());
  first.close();
  CHECK(exists(path));
}

TEST_CASE("paths too long for sockaddr_un are refused with their length", "[dgram]") {
  UnixDatagramSocket s;
  std::string path = "/tmp/" + std::string(200, 'x');
  auto st = UnixDatagramSocket::bind(path, 0600, &s);
  CHECK(st.code == SocketStatus::kPathTooLong);
  CHECK(st.message.find("205 bytes") != std::string::npos);
}

TEST_CASE("sending with no listener says so", "[dgram]") {
  TempDir dir;
  UnixDatagramSocket sender;
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  CHECK(sender.connect(dir.file("nobody.sock")).code == SocketStatus::kNoListener);
}

TEST_CASE("a batch larger than the peer's queue arrives complete and in order", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket listener;
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &listener).ok());
  listener.set_receive_buffer(1 << 20);
  constexpr size_t kCount = 5000;  // far beyond net.unix.max_dgram_qlen
  std::vector<std::string> msgs;
  for (size_t i = 0; i < kCount; ++i) msgs.push_back("{\"type\":\"n\",\"i\":" + std::to_string(i) + "}");
  std::vector<std::string_view> views(msgs.begin(), msgs.end());

  std::vector<std::string> got;
  std::thread receiver([&] {
    DatagramBatch batch(64, 1024);
    got = receive_all(listener, batch, kCount);
  });
  UnixDatagramSocket sender;
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  REQUIRE(sender.connect(path).ok());
  size_t sent = 0;
  auto st = sender.send_batch(views.data(), views.size(), &sent);
  receiver.join();
  CHECK(st.ok());
  CHECK(sent == kCount);
  CHECK(got == msgs);
}

TEST_CASE("an oversized datagram is flagged with its real length", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket listener, sender;
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &listener).ok());
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  REQUIRE(sender.connect(path).ok());
  std::string exact(100, 'e'), big(101, 'b');
  REQUIRE(sender.send(exact).ok());
  REQUIRE(sender.send(big).ok());
  DatagramBatch batch(4, 100);
  size_t n = 0, seen = 0;
  while (seen < 2) {
    REQUIRE(batch.receive(listener, &n).ok());
    for (size_t i = 0; i < n; ++i, ++seen) {
      if (seen == 0) {
        CHECK_FALSE(batch.truncated(i));
        CHECK(batch.message(i) == exact);
      } else {
        CHECK(batch.truncated(i));
        CHECK(batch.length(i) == 101);
        CHECK(batch.message(i).size() == 100);
      }
    }
  }
}

TEST_CASE("receive on an empty socket returns nothing at once", "[dgram]") {
  TempDir dir;
  UnixDatagramSocket listener;
  REQUIRE(UnixDatagramSocket::bind(dir.file("s.sock"), 0600, &listener).ok());
  DatagramBatch batch(8, 64);
  size_t n = 99;
  CHECK(batch.receive(listener, &n).ok());
  CHECK(n == 0);
}

TEST_CASE("a listener that goes away mid-stream turns sends into kNoListener", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket sender;
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  {
    UnixDatagramSocket listener;
    REQUIRE(UnixDatagramSocket::bind(path, 0600, &listener).ok());
    REQUIRE(sender.connect(path).ok());
    REQUIRE(sender.send("{\"type\":\"a\"}").ok());
  }
  CHECK(sender.send("{\"type\":\"b\"}").code == SocketStatus::kNoListener);
}

TEST_CASE("a waiting receive gives up at the receive timeout with nothing", "[dgram]") {
  TempDir dir;
  UnixDatagramSocket listener;
  REQUIRE(UnixDatagramSocket::bind(dir.file("s.sock"), 0600, &listener).ok());
  REQUIRE(listener.set_receive_timeout(0.05).ok());
  DatagramBatch batch(4, 64);
  size_t n = 99;
  CHECK(batch.receive(listener, &n, true).ok());
  CHECK(n == 0);
}

namespace {
std::atomic<bool> g_stop{false};
bool stop_requested() { return g_stop.load(); }
void on_usr1(int) {}
}  // namespace

TEST_CASE("a sender blocked on a full queue stops when cancelled by a signal", "[dgram]") {
  TempDir dir;
  auto path = dir.file("s.sock");
  UnixDatagramSocket listener, sender;  // the listener never reads
  REQUIRE(UnixDatagramSocket::bind(path, 0600, &listener).ok());
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  REQUIRE(sender.connect(path).ok());
  struct sigaction sa {};
  sa.sa_handler = on_usr1;  // no SA_RESTART: the blocked send returns EINTR
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  ::sigaction(SIGUSR1, &sa, &old);
  g_stop = false;
  std::vector<std::string_view> msgs(1000, "{\"type\":\"x\"}");
  SocketStatus st;
  size_t sent = 0;
  std::atomic<bool> done{false};
  std::thread t([&] {
    st = sender.send_batch(msgs.data(), msgs.size(), &sent, &stop_requested);
    done = true;
  });
  g_stop = true;
  for (int i = 0; i < 200 && !done; ++i) {  // bounded: at most ~2 s
    ::pthread_kill(t.native_handle(), SIGUSR1);
    ::usleep(10000);
  }
  t.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  CHECK(st.code == SocketStatus::kCancelled);
  CHECK(sent < msgs.size());
}

TEST_CASE("a batch made with credentials reports each sender's uid, as the kernel says", "[dgram]") {
  TempDir dir;
  UnixDatagramSocket receiver;
  REQUIRE(UnixDatagramSocket::bind(dir.file("r.sock"), 0600, &receiver).ok());
  REQUIRE(receiver.pass_credentials().ok());
  UnixDatagramSocket sender;
  REQUIRE(UnixDatagramSocket::open(&sender).ok());
  REQUIRE(sender.connect(dir.file("r.sock")).ok());
  REQUIRE(sender.send("one").ok());
  REQUIRE(sender.send("two").ok());

  DatagramBatch batch = DatagramBatch::with_credentials(4, 64);
  size_t n = 0;
  REQUIRE(batch.receive(receiver, &n).ok());
  REQUIRE(n == 2);
  for (size_t i = 0; i < n; ++i) CHECK(batch.sender_uid(i) == static_cast<long>(::geteuid()));
  CHECK(batch.message(1) == "two");
  CHECK(batch.sender_uid(7) == -1);  // out of range

  // A plain batch asks for no credentials and reports none.
  REQUIRE(sender.send("three").ok());
  DatagramBatch plain(4, 64);
  auto got = receive_all(receiver, plain, 1);
  CHECK(got == std::vector<std::string>{"three"});
  CHECK(plain.sender_uid(0) == -1);
}
