// SPDX-License-Identifier: Apache-2.0
// NDJSON line reader and writer over real pipes.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "smws/ndjson.h"

using smws::ndjson::LineReader;
using smws::ndjson::Writer;

namespace {

struct Read {
  std::vector<std::pair<size_t, std::string>> lines;  // (number, text)
  std::vector<size_t> too_long;
};

// Writes input into a pipe from a thread (input may exceed the pipe's
// capacity) and reads it all back through a LineReader.
Read read_all(const std::string& input, size_t max_line, size_t chunk = 16) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread writer([&] {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = ::write(fds[1], input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(fds[1]);
  });
  Read out;
  LineReader reader(fds[0], max_line, chunk);
  LineReader::Line line;
  for (;;) {
    auto st = reader.next(&line);
    if (st == LineReader::Status::kLine) {
      out.lines.emplace_back(line.number, std::string(line.text));
    } else if (st == LineReader::Status::kTooLong) {
      out.too_long.push_back(line.number);
    } else if (st == LineReader::Status::kEof) {
      break;
    } else {
      auto f = reader.fill();
      REQUIRE(f != LineReader::Fill::kError);
    }
  }
  writer.join();
  ::close(fds[0]);
  return out;
}

std::string read_fd(int fd) {
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  return all;
}

}  // namespace

TEST_CASE("lines are numbered from 1 and blank lines are skipped but counted", "[ndjson]") {
  auto r = read_all("a\n\n  \t\nb\r\n\r\nc\n", 100);
  REQUIRE(r.lines.size() == 3);
  CHECK(r.lines[0] == std::make_pair(size_t{1}, std::string("a")));
  CHECK(r.lines[1] == std::make_pair(size_t{4}, std::string("b")));
  CHECK(r.lines[2] == std::make_pair(size_t{6}, std::string("c")));
}

TEST_CASE("CRLF line ends lose their CR, a lone CR inside a line stays", "[ndjson]") {
  auto r = read_all("x\r\ny\rz\n", 100);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0].second == "x");
  CHECK(r.lines[1].second == "y\rz");
}

TEST_CASE("a last line without newline is returned", "[ndjson]") {
  auto r = read_all("one\ntwo", 100);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[1] == std::make_pair(size_t{2}, std::string("two")));
  CHECK(read_all("", 100).lines.empty());
  CHECK(read_all("\n\n", 100).lines.empty());
}

TEST_CASE("an overlong line is reported once by number and its rest skipped", "[ndjson]") {
  std::string huge(100000, 'x');
  auto r = read_all("ok1\n" + huge + "\nok3\n" + huge, 1000, 4096);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0] == std::make_pair(size_t{1}, std::string("ok1")));
  CHECK(r.lines[1] == std::make_pair(size_t{3}, std::string("ok3")));
  CHECK(r.too_long == std::vector<size_t>{2, 4});
}

TEST_CASE("a line of exactly max_line bytes passes, one more is too long", "[ndjson]") {
  std::string exact(50, 'a'), over(51, 'b');
  auto r = read_all(exact + "\r\n" + over + "\n" + exact, 50, 7);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0].second == exact);
  CHECK(r.lines[1] == std::make_pair(size_t{3}, exact));
  CHECK(r.too_long == std::vector<size_t>{2});
}

TEST_CASE("bytes are passed through untouched: invalid UTF-8, NUL", "[ndjson]") {
  std::string weird("\xff\xfe\x00z", 4);
  auto r = read_all(weird + "\nnext\n", 100);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0].second == weird);
}

TEST_CASE("many lines across small reads arrive complete and in order", "[ndjson]") {
  std::string input;
  for (int i = 0; i < 20000; ++i) input += "line " + std::to_string(i) + "\n";
  auto r = read_all(input, 64, 100);
  REQUIRE(r.lines.size() == 20000);
  for (int i = 0; i < 20000; i += 997) CHECK(r.lines[i].second == "line " + std::to_string(i));
}

TEST_CASE("the writer buffers until capacity, then writes everything in order", "[ndjson]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string expected;
  {
    Writer w(fds[1], 64);
    for (int i = 0; i < 100; ++i) {
      std::string line = "{\"n\":" + std::to_string(i) + "}";
      expected += line + "\n";
      REQUIRE(w.write_line(line) == Writer::Status::kOk);
      CHECK(w.pending() < 64);
    }
    w.buffer() += "{\"built\":\"in place\"}";
    REQUIRE(w.end_line() == Writer::Status::kOk);
    expected += "{\"built\":\"in place\"}\n";
    REQUIRE(w.flush() == Writer::Status::kOk);
    CHECK(w.pending() == 0);
  }
  ::close(fds[1]);
  CHECK(read_fd(fds[0]) == expected);
  ::close(fds[0]);
}

TEST_CASE("a closed reader shows up as kClosed, and stays closed", "[ndjson]") {
  ::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[0]);
  Writer w(fds[1], 16);
  CHECK(w.write_line("0123456789abcdef") == Writer::Status::kClosed);
  CHECK(w.write_line("more") == Writer::Status::kClosed);
  CHECK(w.flush() == Writer::Status::kClosed);
  ::close(fds[1]);
}

TEST_CASE("a non-blocking output that fills up is waited on, not dropped", "[ndjson]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  std::string line(1000, 'z');
  std::string got;
  std::thread reader([&] { got = read_fd(fds[0]); });
  {
    Writer w(fds[1], 4096);
    for (int i = 0; i < 500; ++i) REQUIRE(w.write_line(line) == Writer::Status::kOk);
    REQUIRE(w.flush() == Writer::Status::kOk);
  }
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  CHECK(got.size() == 500 * 1001);
}

// Against a plain reference splitter, over random inputs (long lines, CRLF,
// blanks, NULs, a missing final newline) and read sizes that cut lines and
// line ends anywhere.
TEST_CASE("the reader agrees with a reference splitter for any input and read size",
          "[ndjson]") {
  uint32_t state = 7;
  auto rnd = [&state](uint32_t n) {
    state = state * 1103515245u + 12345u;
    return (state >> 8) % n;
  };
  for (int round = 0; round < 60; ++round) {
    const size_t max_line = 1 + rnd(40);
    std::string input;
    int lines = static_cast<int>(rnd(30));
    for (int i = 0; i < lines; ++i) {
      size_t len = rnd(4) == 0 ? rnd(120) : rnd(static_cast<uint32_t>(max_line) + 3);
      for (size_t k = 0; k < len; ++k) {
        const char pool[] = "ab {}\"\t\r\xff";
        input += rnd(50) == 0 ? '\0' : pool[rnd(sizeof pool - 1)];
      }
      if (i + 1 < lines || rnd(2)) input += rnd(3) == 0 ? "\r\n" : "\n";
    }
    // Reference: split on '\n', drop one trailing '\r', skip blank lines.
    Read expected;
    size_t number = 0, start = 0;
    while (start < input.size()) {
      size_t nl = input.find('\n', start);
      std::string text = input.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      start = nl == std::string::npos ? input.size() : nl + 1;
      ++number;
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (text.size() > max_line) {
        expected.too_long.push_back(number);
      } else if (text.find_first_not_of(" \t\r") != std::string::npos) {
        expected.lines.emplace_back(number, text);
      }
    }
    size_t chunk = 1 + rnd(17);
    INFO("round " << round << ", max_line " << max_line << ", chunk " << chunk);
    auto got = read_all(input, max_line, chunk);
    REQUIRE(got.lines == expected.lines);
    REQUIRE(got.too_long == expected.too_long);
  }
}
