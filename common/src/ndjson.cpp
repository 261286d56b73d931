// SPDX-License-Identifier: Apache-2.0
#include "smws/ndjson.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace smws::ndjson {
namespace {

bool is_blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace

LineReader::LineReader(int fd, size_t max_line, size_t chunk, CancelFn cancelled)
    : fd_(fd), max_line_(max_line), chunk_(chunk), cancelled_(cancelled) {
  // A partial line is at most max_line + 1 bytes (the +1 for a CR) when
  // fill() is called, so this always leaves a whole chunk free after compaction.
  buf_.resize(max_line_ + 2 + chunk_);
}

LineReader::Status LineReader::next(Line* line) {
  for (;;) {
    if (skipping_) {
      const void* nl = std::memchr(buf_.data() + begin_, '\n', end_ - begin_);
      if (nl == nullptr) {
        begin_ = end_ = scanned_ = 0;  // drop the overlong line's bytes as they come
        if (eof_) {
          skipping_ = false;
          return Status::kEof;
        }
        return Status::kNeedRead;
      }
      begin_ = static_cast<size_t>(static_cast<const char*>(nl) - buf_.data()) + 1;
      scanned_ = begin_;
      skipping_ = false;
      continue;
    }

    const char* base = buf_.data();
    const void* nl = std::memchr(base + scanned_, '\n', end_ - scanned_);
    if (nl == nullptr) {
      scanned_ = end_;
      size_t pending = end_ - begin_;
      if (pending > max_line_ + 1) {  // +1: a CR that would be dropped
        ++line_no_;
        line->text = {};
        line->number = line_no_;
        skipping_ = true;
        begin_ = end_ = scanned_ = 0;
        return Status::kTooLong;
      }
      if (!eof_) return Status::kNeedRead;
      if (pending == 0) return Status::kEof;
      // The last line has no "\n": return it, once.
      std::string_view text(base + begin_, pending);
      begin_ = scanned_ = end_;
      ++line_no_;
      if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
      // Length before blankness, as for a line with its "\n" (an overlong
      // blank line is reported either way; found by tests/fuzz/ndjson_fuzz).
      if (text.size() > max_line_) {
        line->text = {};
        line->number = line_no_;
        return Status::kTooLong;
      }
      if (is_blank(text)) continue;
      line->text = text;
      line->number = line_no_;
      return Status::kLine;
    }

    size_t nl_pos = static_cast<size_t>(static_cast<const char*>(nl) - base);
    std::string_view text(base + begin_, nl_pos - begin_);
    begin_ = scanned_ = nl_pos + 1;
    ++line_no_;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.size() > max_line_) {
      line->text = {};
      line->number = line_no_;
      return Status::kTooLong;
    }
    if (is_blank(text)) continue;
    line->text = text;
    line->number = line_no_;
    return Status::kLine;
  }
}

LineReader::Fill LineReader::fill() {
  if (eof_) return Fill::kEof;
  if (begin_ > 0) {
    // Compact: move the partial line to the front.
    size_t n = end_ - begin_;
    if (n > 0) std::memmove(buf_.data(), buf_.data() + begin_, n);
    scanned_ -= begin_;
    end_ = n;
    begin_ = 0;
  }
  for (;;) {
    ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return Fill::kOk;
    }
    if (n == 0) {
      eof_ = true;
      return Fill::kEof;
    }
    if (errno == EINTR) {
      if (cancelled_ && cancelled_()) return Fill::kCancelled;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // A non-blocking stdin (inherited from a parent that set O_NONBLOCK):
      // wait for data instead of spinning.
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, -1);
      if (r < 0 && errno == EINTR && cancelled_ && cancelled_()) return Fill::kCancelled;
      continue;
    }
    error_ = errno;
    return Fill::kError;
  }
}

Writer::Writer(int fd, size_t capacity, CancelFn cancelled)
    : fd_(fd), capacity_(capacity), cancelled_(cancelled) {
  buf_.reserve(capacity_ + 4096);
}

Writer::Status Writer::write_line(std::string_view line) {
  if (status_ != Status::kOk) return status_;
  buf_.append(line.data(), line.size());
  return end_line();
}

Writer::Status Writer::end_line() {
  if (status_ != Status::kOk) {
    buf_.clear();
    return status_;
  }
  buf_.push_back('\n');
  if (buf_.size() >= capacity_) return flush();
  return Status::kOk;
}

Writer::Status Writer::flush() {
  if (status_ != Status::kOk) {
    buf_.clear();
    return status_;
  }
  if (buf_.empty()) return Status::kOk;
  Status st = write_all(buf_.data(), buf_.size());
  buf_.clear();
  if (st != Status::kOk) status_ = st;
  return st;
}

Writer::Status Writer::write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w >= 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (errno == EINTR) {
      if (cancelled_ && cancelled_()) return Status::kCancelled;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd pfd{fd_, POLLOUT, 0};
      int r = ::poll(&pfd, 1, -1);
      if (r < 0 && errno == EINTR && cancelled_ && cancelled_()) return Status::kCancelled;
      continue;
    }
    if (errno == EPIPE) return Status::kClosed;
    error_ = errno;
    return Status::kError;
  }
  return Status::kOk;
}

}  // namespace smws::ndjson
