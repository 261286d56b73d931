// SPDX-License-Identifier: Apache-2.0
// ndjson::LineReader against a three-line reference splitter: the same bytes,
// read through a file in small chunks, must give the same lines, numbers and
// kTooLong reports as splitting the whole input at once.
// Control bytes: max_line (1..64), read chunk (1..32).
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "smws/ndjson.h"

namespace {

struct Item {
  bool too_long;
  std::string text;
  size_t number;
  bool operator==(const Item& o) const {
    return too_long == o.too_long && text == o.text && number == o.number;
  }
};

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

// The documented contract (ndjson.h), on the whole input at once.
std::vector<Item> reference(std::string_view in, size_t max_line) {
  std::vector<Item> out;
  size_t number = 0;
  while (!in.empty()) {
    size_t nl = in.find('\n');
    std::string_view text = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    ++number;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.size() > max_line) {
      out.push_back({true, "", number});
    } else if (!blank(text)) {
      out.push_back({false, std::string(text), number});
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const size_t max_line = 1 + input.byte() % 64;
  const size_t chunk = 1 + input.byte() % 32;
  const std::string_view bytes = input.rest();

  int fd = memfd_create("ndjson_fuzz", 0);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);

  smws::ndjson::LineReader reader(fd, max_line, chunk);
  std::vector<Item> got;
  for (size_t guard = 0; guard < 4 * bytes.size() + 16; ++guard) {
    smws::ndjson::LineReader::Line line;
    auto st = reader.next(&line);
    if (st == smws::ndjson::LineReader::Status::kEof) break;
    if (st == smws::ndjson::LineReader::Status::kNeedRead) {
      auto fill = reader.fill();
      FUZZ_CHECK(fill == smws::ndjson::LineReader::Fill::kOk ||
                 fill == smws::ndjson::LineReader::Fill::kEof);
      continue;
    }
    const bool too_long = st == smws::ndjson::LineReader::Status::kTooLong;
    FUZZ_CHECK(too_long ? line.text.empty() : line.text.size() <= max_line);
    FUZZ_CHECK(line.text.find('\n') == std::string_view::npos);
    got.push_back({too_long, std::string(line.text), line.number});
  }
  close(fd);
  FUZZ_CHECK(got == reference(bytes, max_line));
  return 0;
}
