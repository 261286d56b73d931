// SPDX-License-Identifier: Apache-2.0
// Transport: the bytes of one accepted connection, over plain TCP or TLS.
// Non-blocking both ways; owned by one connection, used by the loop thread.
//
// Plain TCP writes the queue with sendmsg(MSG_NOSIGNAL): up to kMaxIov
// frames per call, an iovec per frame, no copy; what the kernel does not
// take stays queued with an offset into the front frame. TLS has no writev:
// whole frames are copied into a staging buffer of about one TLS record and
// written with SSL_write; after WANT_WRITE the same bytes are retried (the
// context also allows partial and moving-buffer writes, tls.cpp).
//
// OpenSSL's socket BIO uses write(2), not MSG_NOSIGNAL: with TLS the process
// must ignore SIGPIPE (shutdown::install() does).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "smws/net/send_queue.h"

typedef struct ssl_st SSL;

namespace smws::net {

class TlsContext;

// What one write() handed to the kernel, for the server's counters.
struct WriteTally {
  uint64_t bytes = 0;     // bytes of fully written entries
  uint64_t messages = 0;  // data messages and drop notices fully written
  uint64_t refused = 0;   // write calls that stopped at a full socket buffer
                          // (a short write, EAGAIN, TLS WANT_*)
  bool close_written = false;  // our close frame went out
  bool ping_written = false;   // our ping went out (its timeout starts now)
  uint64_t bytes_after_ping = 0;  // bytes this call wrote after the ping's last one
};

// Where a TCP connection's byte stream stands, from the kernel: how a
// server tells a peer that does not read (its receive window closed, our
// bytes unacknowledged) from one that reads but does not answer.
struct TcpProgress {
  uint64_t acked = 0;    // bytes the peer's TCP acknowledged (tcpi_bytes_acked)
  uint64_t written = 0;  // bytes handed to the kernel: acked + SIOCOUTQ
  bool window_known = false;
  uint32_t peer_window = 0;  // the peer's advertised receive window (bytes)
};

class Transport {
 public:
  enum class Write {
    kDrained,  // queue (and TLS staging) empty
    kBlocked,  // the kernel took what fit: wait for EPOLLOUT (TLS: any event)
    kFailed,   // the peer is gone (EPIPE, ECONNRESET, a TLS error)
  };

  // Takes the accepted socket. With tls set, the connection starts a
  // server-side TLS handshake; false (and the socket stays the caller's)
  // when OpenSSL cannot set one up.
  bool attach(int fd, TlsContext* tls);
  ~Transport();

  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }
  // TLS bytes staged and not yet taken by the kernel.
  bool has_staged() const { return stage_off_ < stage_.size(); }
  size_t staged_bytes() const { return stage_.size() - stage_off_; }
  // False when the kernel cannot tell (not TCP, or the call failed).
  bool tcp_progress(TcpProgress* out) const;

  // > 0 bytes read, 0 EOF, -1 would block, -2 error, kPlainOnTls (below).
  // in_handshake: a TLS failure is logged (naming peer), since nothing else
  // will report it.
  ssize_t read(char* buf, size_t n, bool in_handshake, const std::string& peer);
  // read(): the first byte a TLS connection received is not a TLS record's
  // (a ClientHello starts 0x16 0x03): the peer speaks plain HTTP to the TLS
  // port. The connection is plain from then on (TLS state freed, nothing
  // read), so the server can answer it in plain text; nginx answers "400
  // The plain HTTP request was sent to HTTPS port", and so do we.
  static constexpr ssize_t kPlainOnTls = -3;

  // Writes queued entries until the queue is drained or the kernel is full.
  Write write(SendQueue& queue, const DropNotice& notice, WriteTally* tally);

  // Our side is done: TLS close_notify, then shutdown(SHUT_WR).
  void shutdown_write();
  // Frees TLS state and closes the socket (which leaves any epoll set).
  void close();

 private:
  Write write_plain(SendQueue& queue, const DropNotice& notice, WriteTally* tally);
  Write write_tls(SendQueue& queue, const DropNotice& notice, WriteTally* tally);

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool first_byte_seen_ = false;  // TLS: the first byte was a TLS record's
  std::string stage_;     // TLS: staged bytes, retried as they are until written
  size_t stage_off_ = 0;
};

}  // namespace smws::net
