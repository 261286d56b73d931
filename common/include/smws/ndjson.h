// SPDX-License-Identifier: Apache-2.0
// NDJSON on file descriptors: a line reader that survives any input and a
// buffered line writer that writes in large pieces.
//
// Both are single-threaded: one thread owns each object and its fd.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace smws::ndjson {

// A cancellation hook for blocking reads/writes: called when a read or write
// is interrupted by a signal (EINTR); returning true stops the operation.
// Tools pass smws::shutdown::requested.
using CancelFn = bool (*)();

// Splits the bytes of an fd into lines, numbered from 1:
//  - "\n" ends a line; a "\r" before it is dropped (CRLF input);
//  - blank lines (only spaces, tabs or CR) are skipped but still counted;
//  - a line longer than max_line bytes is reported once as kTooLong and the
//    rest of it is skipped without being buffered, so memory stays bounded;
//  - a last line without "\n" is returned at end of input;
//  - bytes are not interpreted: invalid UTF-8 or NULs are the caller's to
//    judge (scan() reports them).
// The caller drives the reads, so it can act before the reader blocks (e.g.
// send what it has batched while stdin is quiet):
//
//   for (;;) {
//     auto st = reader.next(&line);
//     if (st == kLine) ... else if (st == kTooLong) ... else if (st == kEof) break;
//     else /* kNeedRead */ { flush_batch(); if (reader.fill() != Fill::kOk) ...; }
//   }
class LineReader {
 public:
  enum class Status {
    kLine,      // *line holds a line
    kTooLong,   // line->number was longer than max_line; its text is empty
    kNeedRead,  // no complete line is buffered: call fill()
    kEof,       // input ended and every line was returned
  };
  enum class Fill { kOk, kEof, kError, kCancelled };

  struct Line {
    std::string_view text;  // without "\n" / "\r\n"; valid until the next fill()
    size_t number = 0;      // 1-based line number
  };

  // max_line: longest line returned (bytes, without the line end).
  // chunk: bytes asked of each read(2); large so a fast producer costs few
  // system calls.
  LineReader(int fd, size_t max_line, size_t chunk = 256 * 1024, CancelFn cancelled = nullptr);

  Status next(Line* line);

  // One read(2) into the buffer (retried after EINTR unless cancelled).
  // kEof makes next() return the unterminated last line, if any, then kEof.
  Fill fill();

  int error() const { return error_; }  // errno after Fill::kError

 private:
  int fd_;
  size_t max_line_;
  size_t chunk_;
  CancelFn cancelled_;
  std::vector<char> buf_;
  size_t begin_ = 0;        // first unconsumed byte
  size_t end_ = 0;          // one past the last buffered byte
  size_t scanned_ = 0;      // [begin_, scanned_) is known to hold no '\n'
  size_t line_no_ = 0;      // lines completed so far
  bool eof_ = false;
  bool skipping_ = false;   // inside an overlong line, discarding to its '\n'
  int error_ = 0;
};

// Buffers lines and writes them with few large write(2) calls. A write that
// would block (a non-blocking fd) waits for the fd with poll. EPIPE (reader
// gone) is reported as kClosed, which producers treat as a quiet exit 0.
// After kClosed or kError every call returns the same status and drops data.
class Writer {
 public:
  enum class Status { kOk, kClosed, kError, kCancelled };

  // capacity: bytes buffered before write_line() writes them out. 64 KiB
  // matches a Linux pipe's default capacity, so one write fills the pipe.
  explicit Writer(int fd, size_t capacity = 64 * 1024, CancelFn cancelled = nullptr);

  // Appends line and "\n"; writes the buffer once it holds capacity bytes.
  Status write_line(std::string_view line);
  // The buffer, for callers that build a line in place; call end_line() after.
  std::string& buffer() { return buf_; }
  Status end_line();

  // Writes everything buffered.
  Status flush();

  size_t pending() const { return buf_.size(); }
  Status status() const { return status_; }
  int error() const { return error_; }  // errno after kError

 private:
  Status write_all(const char* p, size_t n);

  int fd_;
  size_t capacity_;
  CancelFn cancelled_;
  std::string buf_;
  Status status_ = Status::kOk;
  int error_ = 0;
};

}  // namespace smws::ndjson
