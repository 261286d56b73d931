// SPDX-License-Identifier: Apache-2.0
// AF_UNIX SOCK_DGRAM sockets: a small RAII wrapper over POSIX, with batched
// send (sendmmsg) and receive (recvmmsg). Plain POSIX rather than POCO:
// POCO 1.11 loses the datagram when receiveFrom() meets an unbound sender and
// has no batched calls (~2.0M datagrams/s batched vs ~0.7M one by one here).
//
// Errors are values (Status), never exceptions; the tool's top level
// turns them into the SPEC's exit code with exit_code_for().
//
// Threading: a socket object belongs to the one thread that uses it.
//
// Flow control: on Linux a datagram sent to a Unix socket whose receive
// queue is full (net.unix.max_dgram_qlen datagrams, 10 by default) makes a
// blocking sender wait, and a non-blocking one get EAGAIN. send()/send_batch()
// wait in either case, so a burst is never dropped because the receiver is
// slower; they stop only on an error or when cancelled.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smws/status.h"

namespace smws {

// The datagram calls speak the library's Status (status.h); the name stays
// for the code that reads better with it.
using SocketStatus = Status;

// Called when a blocking call is interrupted by a signal; true stops it.
// Tools pass smws::shutdown::requested.
using SocketCancelFn = bool (*)();

// Largest path a sockaddr_un holds (without the terminating NUL).
size_t max_socket_path();

class UnixDatagramSocket {
 public:
  UnixDatagramSocket() = default;
  ~UnixDatagramSocket();
  UnixDatagramSocket(UnixDatagramSocket&& other) noexcept;
  UnixDatagramSocket& operator=(UnixDatagramSocket&& other) noexcept;
  UnixDatagramSocket(const UnixDatagramSocket&) = delete;
  UnixDatagramSocket& operator=(const UnixDatagramSocket&) = delete;

  // An unbound socket, for sending.
  static SocketStatus open(UnixDatagramSocket* out);

  // A socket bound to path with the given file mode. What is at path decides:
  //   nothing            → bind;
  //   a live socket      → kInUse (probed with connect(); nothing is touched);
  //   a stale socket     → removed and replaced;
  //   anything else      → kNotSocket (never deleted).
  // The object owns the path: close() and the destructor remove it, but only
  // while it still is this socket (not a successor's).
  static SocketStatus bind(const std::string& path, mode_t mode, UnixDatagramSocket* out);

  // Sets the default destination for send()/send_batch().
  SocketStatus connect(const std::string& path);

  // Sends one datagram to the connected peer, waiting while its queue is full.
  SocketStatus send(std::string_view datagram, SocketCancelFn cancelled = nullptr);

  // Sends msgs[0..n) in order with sendmmsg, waiting while the peer's queue is
  // full. *sent is how many went out (all of them unless an error is returned;
  // the failing one is msgs[*sent]).
  SocketStatus send_batch(const std::string_view* msgs, size_t n, size_t* sent,
                          SocketCancelFn cancelled = nullptr);

  // Asks for a receive buffer of `bytes` (SO_RCVBUFFORCE when privileged,
  // else SO_RCVBUF, which the kernel caps at net.core.rmem_max).
  // Returns the size the kernel granted (Linux reports twice the request).
  int set_receive_buffer(int bytes);

  // How long a blocking receive waits before giving up (SO_RCVTIMEO);
  // 0 = forever.
  SocketStatus set_receive_timeout(double seconds);
  // Asks the kernel to attach each sender's credentials (SO_PASSCRED) to
  // the datagrams queued from now on; DatagramBatch::sender_uid reads them.
  // A receiver that several users may write to (a group-writable socket)
  // uses them to decide whom to believe.
  SocketStatus pass_credentials();

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }  // bound path, or ""

  // Closes the socket and removes the bound path (if it still is ours).
  void close();

 private:
  int fd_ = -1;
  std::string path_;  // bound path we own
  dev_t dev_ = 0;     // identity of the socket file we created at path_
  ino_t ino_ = 0;
  // sendmmsg scratch, reused across calls.
  std::vector<mmsghdr> mm_;
  std::vector<iovec> iov_;
};

// Receive-side storage for recvmmsg: max_messages buffers of max_size bytes.
// A datagram larger than max_size is received truncated and flagged, with
// its real length, so the caller can refuse it instead of passing it on cut.
class DatagramBatch {
 public:
  DatagramBatch(size_t max_messages, size_t max_size);
  ~DatagramBatch();
  DatagramBatch(const DatagramBatch&) = delete;
  DatagramBatch& operator=(const DatagramBatch&) = delete;

  // Takes what is pending. Without `wait` it never blocks (*count is 0 when
  // nothing is pending); with `wait` it blocks for the first datagram
  // (MSG_WAITFORONE), up to the socket's receive timeout, then takes what is
  // queued. A timeout or EINTR is *count 0 and Ok: the caller's loop checks
  // its clock and shutdown flag. *count < capacity() means the queue was
  // empty when the call returned.
  SocketStatus receive(const UnixDatagramSocket& socket, size_t* count, bool wait = false);

  // The i-th datagram of the last receive(), cut to max_size when truncated.
  std::string_view message(size_t i) const;
  bool truncated(size_t i) const;
  size_t length(size_t i) const;  // its real length, even when truncated

  size_t capacity() const { return max_messages_; }

  // The sender's uid as the kernel reported it, when the socket passes
  // credentials (UnixDatagramSocket::pass_credentials) and the batch was
  // made with_credentials; -1 otherwise. Never what the sender claims.
  long sender_uid(size_t i) const;
  // The sender's pid, likewise (-1 when not known). sm-listen writes both
  // into every event's "sender".
  long sender_pid(size_t i) const;

  // A batch that also receives each datagram's credentials.
  static DatagramBatch with_credentials(size_t max_messages, size_t max_size);
  DatagramBatch(DatagramBatch&&) = default;

 private:
  size_t max_messages_;
  size_t max_size_;
  std::unique_ptr<char[]> storage_;  // not zeroed: pages are touched only when used
  std::vector<mmsghdr> mm_;
  std::vector<iovec> iov_;
  size_t control_size_ = 0;          // per message; 0: no credentials asked
  std::unique_ptr<char[]> control_;  // max_messages * control_size_ bytes
};

}  // namespace smws
