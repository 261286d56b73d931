// SPDX-License-Identifier: Apache-2.0
#include "smws/net/transport.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_bytes_acked, tcpi_snd_wnd
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstddef>

#include "smws/log.h"
#include "smws/net/tls.h"

namespace smws::net {
namespace {

// Frames gathered into one sendmsg(2); 64 x ~100 B events fill a packet train
// while keeping the iovec array on the stack.
constexpr int kMaxIov = 64;
// TLS has no writev: frames are copied into a staging buffer of about one
// TLS record and written with SSL_write.
constexpr size_t kTlsStage = 16 * 1024;

void count_written(const QueueEntry& e, WriteTally* tally) {
  tally->bytes += e.frame->size();
  if (e.kind == EntryKind::kData || e.kind == EntryKind::kDropNotice) {
    ++tally->messages;
  } else if (e.kind == EntryKind::kClose) {
    tally->close_written = true;
  } else if (e.kind == EntryKind::kControl) {
    tally->ping_written = true;
    tally->bytes_after_ping = 0;
    return;
  }
  if (tally->ping_written) tally->bytes_after_ping += e.frame->size();
}

}  // namespace

bool Transport::tcp_progress(TcpProgress* out) const {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
      len < offsetof(tcp_info, tcpi_bytes_received)) {
    return false;  // not TCP, or a kernel older than 4.1
  }
  int unacked = 0;
  if (::ioctl(fd_, SIOCOUTQ, &unacked) != 0 || unacked < 0) return false;
  out->acked = info.tcpi_bytes_acked;
  out->written = info.tcpi_bytes_acked + static_cast<uint64_t>(unacked);
  // tcpi_snd_wnd came with Linux 5.19; older kernels return a shorter struct.
  out->window_known = len >= offsetof(tcp_info, tcpi_snd_wnd) + sizeof info.tcpi_snd_wnd;
  out->peer_window = out->window_known ? info.tcpi_snd_wnd : 0;
  return true;
}

bool Transport::attach(int fd, TlsContext* tls) {
  if (tls) {
    SSL* ssl = SSL_new(tls->ssl_ctx());
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
      if (ssl) SSL_free(ssl);
      return false;
    }
    SSL_set_accept_state(ssl);
    ssl_ = ssl;
  }
  fd_ = fd;
  return true;
}

Transport::~Transport() { close(); }

void Transport::close() {
  if (ssl_) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

ssize_t Transport::read(char* buf, size_t n, bool in_handshake, const std::string& peer) {
  if (!ssl_) {
    for (;;) {
      ssize_t r = ::recv(fd_, buf, n, 0);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
      return -2;
    }
  }
  if (!first_byte_seen_) {
    // Peeked, so OpenSSL still reads the ClientHello from the start.
    unsigned char first = 0;
    ssize_t p = ::recv(fd_, &first, 1, MSG_PEEK);
    if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return -1;
    if (p == 0) return 0;
    if (p < 0) return -2;
    if (first != 0x16) {  // not a TLS handshake record
      SSL_free(ssl_);
      ssl_ = nullptr;
      return kPlainOnTls;
    }
    first_byte_seen_ = true;
  }
  ERR_clear_error();
  int r = SSL_read(ssl_, buf, static_cast<int>(n));
  if (r > 0) return r;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return -1;
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;  // TCP EOF without close_notify
  if (in_handshake) {
    char text[256];
    ERR_error_string_n(ERR_get_error(), text, sizeof text);
    log::note(1, "TLS handshake with " + peer + " failed: " + text);
  }
  ERR_clear_error();
  return -2;
}

Transport::Write Transport::write(SendQueue& queue, const DropNotice& notice, WriteTally* tally) {
  return ssl_ ? write_tls(queue, notice, tally) : write_plain(queue, notice, tally);
}

Transport::Write Transport::write_plain(SendQueue& queue, const DropNotice& notice,
                                        WriteTally* tally) {
  while (!queue.empty()) {
    iovec iov[kMaxIov];
    int count = 0;
    size_t total = 0;
    for (size_t i = 0; i < queue.size() && count < kMaxIov; ++i, ++count) {
      QueueEntry& e = queue.at(i);
      queue.materialize(e, notice);
      size_t skip = count == 0 ? queue.front_offset() : 0;
      iov[count].iov_base = const_cast<char*>(e.frame->data()) + skip;
      iov[count].iov_len = e.frame->size() - skip;
      total += iov[count].iov_len;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ++tally->refused;
        return Write::kBlocked;
      }
      return Write::kFailed;  // EPIPE, ECONNRESET: the peer is gone
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      QueueEntry& front = queue.front();
      size_t rest = front.frame->size() - queue.front_offset();
      if (left < rest) {
        queue.advance_front(left);
        break;
      }
      left -= rest;
      count_written(front, tally);
      queue.pop_front();
    }
    if (static_cast<size_t>(n) < total) {
      ++tally->refused;  // the buffer is full now: a stall starts here
      return Write::kBlocked;  // EPOLLOUT resumes
    }
  }
  return Write::kDrained;
}

Transport::Write Transport::write_tls(SendQueue& queue, const DropNotice& notice,
                                      WriteTally* tally) {
  for (;;) {
    if (stage_off_ == stage_.size()) {
      stage_.clear();
      stage_off_ = 0;
      // Stage whole frames (at least one) up to about one TLS record.
      while (!queue.empty()) {
        QueueEntry& e = queue.front();
        queue.materialize(e, notice);
        if (!stage_.empty() && stage_.size() + e.frame->size() > kTlsStage) break;
        stage_ += *e.frame;
        count_written(e, tally);
        queue.pop_front();
      }
      if (stage_.empty()) break;
    }
    ERR_clear_error();
    // Retried with the same bytes after WANT_WRITE, as OpenSSL requires.
    int r = SSL_write(ssl_, stage_.data() + stage_off_, static_cast<int>(stage_.size() - stage_off_));
    if (r > 0) {
      stage_off_ += static_cast<size_t>(r);
      continue;
    }
    int err = SSL_get_error(ssl_, r);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      ++tally->refused;
      return Write::kBlocked;
    }
    return Write::kFailed;
  }
  return Write::kDrained;
}

void Transport::shutdown_write() {
  if (ssl_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  ::shutdown(fd_, SHUT_WR);
}

}  // namespace smws::net
