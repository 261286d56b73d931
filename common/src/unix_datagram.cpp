// SPDX-License-Identifier: Apache-2.0
#include "smws/unix_datagram.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace smws {
namespace {

std::string errno_message(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  return m;
}

bool make_address(const std::string& path, sockaddr_un* addr, socklen_t* len) {
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) return false;
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

SocketStatus path_too_long(const std::string& path) {
  return SocketStatus::Error(
      SocketStatus::kPathTooLong, ENAMETOOLONG,
      path.empty() ? std::string("socket path is empty")
                   : "socket path '" + path + "' is " + std::to_string(path.size()) +
                         " bytes; Unix sockets allow at most " +
                         std::to_string(max_socket_path()));
}

SocketStatus send_error(int err) {
  switch (err) {
    case ECONNREFUSED:
    case ENOENT:
    case ENOTCONN:
    case EDESTADDRREQ:
    case ENOTDIR:
      return SocketStatus::Error(SocketStatus::kNoListener, err,
                                 errno_message("no listener on the socket", err));
    case EACCES:
    case EPERM:
      return SocketStatus::Error(SocketStatus::kPermission, err,
                                 errno_message("cannot send to the socket", err));
    case EMSGSIZE:
      return SocketStatus::Error(SocketStatus::kTooBig, err,
                                 errno_message("the socket refused the datagram", err));
    default:
      return SocketStatus::Error(SocketStatus::kSystem, err,
                                 errno_message("cannot send to the socket", err));
  }
}

// Waits until the connected peer has room again (EAGAIN: its queue is full;
// ENOBUFS: memory is short). A 50 ms cap on each wait bounds the time to
// notice a cancellation even if no signal interrupts poll.
bool wait_writable(int fd, SocketCancelFn cancelled) {
  pollfd p{fd, POLLOUT, 0};
  int r = ::poll(&p, 1, 50);
  if (r < 0 && errno == EINTR && cancelled && cancelled()) return false;
  return !(cancelled && cancelled());
}

// What a failed send(2)/sendmmsg(2) means: nullopt to try again (EINTR, or a
// full queue once there is room), else the status to return (cancelled, or
// the error).
std::optional<SocketStatus> after_send_failure(int fd, int err, SocketCancelFn cancelled) {
  if (err == EINTR) {
    if (cancelled && cancelled()) return SocketStatus::Error(SocketStatus::kCancelled, err, "interrupted");
    return std::nullopt;
  }
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
    if (!wait_writable(fd, cancelled)) {
      return SocketStatus::Error(SocketStatus::kCancelled, EINTR, "interrupted");
    }
    return std::nullopt;
  }
  return send_error(err);
}

int new_socket() {
  return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

}  // namespace

size_t max_socket_path() { return sizeof(sockaddr_un{}.sun_path) - 1; }

UnixDatagramSocket::~UnixDatagramSocket() { close(); }

UnixDatagramSocket::UnixDatagramSocket(UnixDatagramSocket&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)), dev_(other.dev_), ino_(other.ino_) {
  other.fd_ = -1;
  other.path_.clear();
}

UnixDatagramSocket& UnixDatagramSocket::operator=(UnixDatagramSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    dev_ = other.dev_;
    ino_ = other.ino_;
    other.fd_ = -1;
    other.path_.clear();
  }
  return *this;
}

void UnixDatagramSocket::close() {
  if (!path_.empty()) {
    // Remove the file only while it is still the one we created: a successor
    // may have replaced a path we no longer serve.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
        st.st_ino == ino_) {
      ::unlink(path_.c_str());
    }
    path_.clear();
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

SocketStatus UnixDatagramSocket::open(UnixDatagramSocket* out) {
  out->close();
  int fd = new_socket();
  if (fd < 0) {
    int err = errno;
    return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("socket", err));
  }
  out->fd_ = fd;
  return SocketStatus::Ok();
}

SocketStatus UnixDatagramSocket::bind(const std::string& path, mode_t mode,
                                      UnixDatagramSocket* out) {
  out->close();
  sockaddr_un addr;
  socklen_t len;
  if (!make_address(path, &addr, &len)) return path_too_long(path);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return SocketStatus::Error(SocketStatus::kNotSocket, EEXIST,
                                 path + " exists and is not a socket; leaving it alone");
    }
    // A socket file: live if something accepts a connection on it.
    int probe = new_socket();
    if (probe < 0) {
      int err = errno;
      return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("socket", err));
    }
    int r = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), len);
    int err = r == 0 ? 0 : errno;
    ::close(probe);
    if (r == 0 || err == EPROTOTYPE) {  // EPROTOTYPE: a live stream socket
      return SocketStatus::Error(SocketStatus::kInUse, EADDRINUSE,
                                 path + " is in use by another listener");
    }
    if (err == EACCES || err == EPERM) {
      return SocketStatus::Error(SocketStatus::kPermission, err,
                                 errno_message(path, err));
    }
    if (err != ECONNREFUSED) {
      return SocketStatus::Error(SocketStatus::kSystem, err,
                                 errno_message("cannot probe " + path, err));
    }
    // Stale: left behind by a listener that died without cleaning up.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      int uerr = errno;
      return SocketStatus::Error(
          uerr == EACCES || uerr == EPERM ? SocketStatus::kPermission : SocketStatus::kSystem,
          uerr, errno_message("cannot remove stale socket " + path, uerr));
    }
  } else if (errno != ENOENT) {
    int err = errno;
    return SocketStatus::Error(
        err == EACCES || err == EPERM ? SocketStatus::kPermission : SocketStatus::kSystem, err,
        errno_message(path, err));
  }

  int fd = new_socket();
  if (fd < 0) {
    int err = errno;
    return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("socket", err));
  }
  // bind() creates the file with 0777 & ~umask: set the umask so the file is
  // never more open than `mode`, even for the instant before chmod().
  // (Start-up code, single-threaded: the process-wide umask is safe to touch.)
  mode_t old_umask = ::umask(static_cast<mode_t>(~mode & 0777));
  int r = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  ::umask(old_umask);
  if (r != 0) {
    ::close(fd);
    if (err == EADDRINUSE) {
      return SocketStatus::Error(SocketStatus::kInUse, err, path + " is in use by another listener");
    }
    if (err == EACCES || err == EPERM || err == EROFS) {
      return SocketStatus::Error(SocketStatus::kPermission, err,
                                 errno_message("cannot bind " + path, err));
    }
    return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("cannot bind " + path, err));
  }
  if (::lstat(path.c_str(), &st) != 0 || ::chmod(path.c_str(), mode & 07777) != 0) {
    err = errno;
    ::unlink(path.c_str());
    ::close(fd);
    return SocketStatus::Error(SocketStatus::kSystem, err,
                               errno_message("cannot set the mode of " + path, err));
  }
  out->fd_ = fd;
  out->path_ = path;
  out->dev_ = st.st_dev;
  out->ino_ = st.st_ino;
  return SocketStatus::Ok();
}

SocketStatus UnixDatagramSocket::connect(const std::string& path) {
  sockaddr_un addr;
  socklen_t len;
  if (!make_address(path, &addr, &len)) return path_too_long(path);
  for (;;) {
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0) return SocketStatus::Ok();
    int err = errno;
    if (err == EINTR) continue;
    if (err == EPROTOTYPE) {  // a stream socket: some other program's
      return SocketStatus::Error(SocketStatus::kNoListener, err,
                                 "no listener on " + path + ": it is not a datagram socket");
    }
    if (err == ECONNREFUSED || err == ENOENT || err == ENOTDIR) {
      return SocketStatus::Error(SocketStatus::kNoListener, err,
                                 errno_message("no listener on " + path, err));
    }
    if (err == EACCES || err == EPERM) {
      return SocketStatus::Error(SocketStatus::kPermission, err,
                                 errno_message("cannot connect to " + path, err));
    }
    return SocketStatus::Error(SocketStatus::kSystem, err,
                               errno_message("cannot connect to " + path, err));
  }
}

SocketStatus UnixDatagramSocket::send(std::string_view datagram, SocketCancelFn cancelled) {
  for (;;) {
    if (::send(fd_, datagram.data(), datagram.size(), MSG_NOSIGNAL) >= 0) return SocketStatus::Ok();
    if (auto failed = after_send_failure(fd_, errno, cancelled)) return *failed;
  }
}

SocketStatus UnixDatagramSocket::send_batch(const std::string_view* msgs, size_t n, size_t* sent,
                                            SocketCancelFn cancelled) {
  *sent = 0;
  // sendmmsg takes at most UIO_MAXIOV (1024) messages per call.
  constexpr size_t kMaxPerCall = 1024;
  size_t want = std::min(n, kMaxPerCall);
  if (mm_.size() < want) {
    mm_.resize(want);
    iov_.resize(want);
  }
  while (*sent < n) {
    size_t count = std::min(n - *sent, kMaxPerCall);
    for (size_t i = 0; i < count; ++i) {
      const auto& m = msgs[*sent + i];
      iov_[i].iov_base = const_cast<char*>(m.data());
      iov_[i].iov_len = m.size();
      std::memset(&mm_[i], 0, sizeof mm_[i]);
      mm_[i].msg_hdr.msg_iov = &iov_[i];
      mm_[i].msg_hdr.msg_iovlen = 1;
    }
    int r = ::sendmmsg(fd_, mm_.data(), static_cast<unsigned>(count), MSG_NOSIGNAL);
    if (r > 0) {
      *sent += static_cast<size_t>(r);
      continue;
    }
    if (auto failed = after_send_failure(fd_, r == 0 ? EAGAIN : errno, cancelled)) return *failed;
  }
  return SocketStatus::Ok();
}

int UnixDatagramSocket::set_receive_buffer(int bytes) {
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  int granted = 0;
  socklen_t len = sizeof granted;
  ::getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  return granted;
}

DatagramBatch::DatagramBatch(size_t max_messages, size_t max_size)
    : max_messages_(max_messages),
      max_size_(max_size),
      storage_(new char[max_messages * max_size]),
      mm_(max_messages),
      iov_(max_messages) {
  for (size_t i = 0; i < max_messages_; ++i) {
    iov_[i].iov_base = storage_.get() + i * max_size_;
    iov_[i].iov_len = max_size_;
  }
}

DatagramBatch::~DatagramBatch() = default;

DatagramBatch DatagramBatch::with_credentials(size_t max_messages, size_t max_size) {
  DatagramBatch b(max_messages, max_size);
  b.control_size_ = CMSG_SPACE(sizeof(ucred));
  // new char[] is aligned for any fundamental type, and CMSG_SPACE keeps
  // every slot a multiple of the cmsghdr alignment.
  b.control_.reset(new char[max_messages * b.control_size_]());
  return b;
}

SocketStatus UnixDatagramSocket::pass_credentials() {
  int on = 1;
  if (::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    int err = errno;
    return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("SO_PASSCRED", err));
  }
  return SocketStatus::Ok();
}

namespace {

// The SCM_CREDENTIALS of one received message, if it carries them.
bool message_credentials(const msghdr& h, ucred* out) {
  for (const cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), const_cast<cmsghdr*>(c))) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      std::memcpy(out, CMSG_DATA(c), sizeof *out);
      return true;
    }
  }
  return false;
}

}  // namespace

long DatagramBatch::sender_uid(size_t i) const {
  if (control_size_ == 0 || i >= max_messages_) return -1;
  ucred cred{};
  return message_credentials(mm_[i].msg_hdr, &cred) ? static_cast<long>(cred.uid) : -1;
}

long DatagramBatch::sender_pid(size_t i) const {
  if (control_size_ == 0 || i >= max_messages_) return -1;
  ucred cred{};
  return message_credentials(mm_[i].msg_hdr, &cred) ? static_cast<long>(cred.pid) : -1;
}

SocketStatus UnixDatagramSocket::set_receive_timeout(double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
    int err = errno;
    return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("SO_RCVTIMEO", err));
  }
  return SocketStatus::Ok();
}

SocketStatus DatagramBatch::receive(const UnixDatagramSocket& socket, size_t* count, bool wait) {
  *count = 0;
  for (size_t i = 0; i < max_messages_; ++i) {
    std::memset(&mm_[i].msg_hdr, 0, sizeof mm_[i].msg_hdr);
    mm_[i].msg_hdr.msg_iov = &iov_[i];
    mm_[i].msg_hdr.msg_iovlen = 1;
    if (control_size_ != 0) {
      mm_[i].msg_hdr.msg_control = control_.get() + i * control_size_;
      mm_[i].msg_hdr.msg_controllen = control_size_;
    }
    mm_[i].msg_len = 0;
  }
  // MSG_TRUNC: msg_len is the datagram's real length even when it did not fit.
  int flags = MSG_TRUNC | (wait ? MSG_WAITFORONE : MSG_DONTWAIT);
  int r = ::recvmmsg(socket.fd(), mm_.data(), static_cast<unsigned>(max_messages_), flags, nullptr);
  if (r >= 0) {
    *count = static_cast<size_t>(r);
    return SocketStatus::Ok();
  }
  int err = errno;
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return SocketStatus::Ok();
  return SocketStatus::Error(SocketStatus::kSystem, err, errno_message("cannot receive", err));
}

std::string_view DatagramBatch::message(size_t i) const {
  return {storage_.get() + i * max_size_, std::min<size_t>(mm_[i].msg_len, max_size_)};
}

bool DatagramBatch::truncated(size_t i) const {
  return mm_[i].msg_len > max_size_ || (mm_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}

size_t DatagramBatch::length(size_t i) const { return mm_[i].msg_len; }

}  // namespace smws
