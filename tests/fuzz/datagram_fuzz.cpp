// SPDX-License-Identifier: Apache-2.0
// Datagram decoding as sm-listen does it: the input goes out as one real
// AF_UNIX datagram (or two, split at a control byte) and comes back through
// DatagramBatch with a small max_size, so truncation is exercised; each
// datagram then takes sm-listen's path (scan, trim, append_single_line).
// Checks: the batch reports each datagram's real length and truncation flag
// and its bytes unchanged; a printed line holds no CR/LF and is the same
// JSON as the datagram.
// Control bytes: max_size (1..256), split point.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "smws/event.h"
#include "smws/unix_datagram.h"

namespace {

// One receiving socket for the whole run, bound in a fresh temp directory.
struct Endpoint {
  std::string dir, path;
  smws::UnixDatagramSocket receiver, sender;
  Endpoint() {
    char tmpl[] = "/tmp/smws-dgram-fuzz-XXXXXX";
    FUZZ_CHECK(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/sock";
    FUZZ_CHECK(smws::UnixDatagramSocket::bind(path, 0600, &receiver).ok());
    FUZZ_CHECK(receiver.set_receive_timeout(1).ok());
    FUZZ_CHECK(smws::UnixDatagramSocket::open(&sender).ok());
    FUZZ_CHECK(sender.connect(path).ok());
  }
  ~Endpoint() {
    receiver.close();
    rmdir(dir.c_str());
  }
};

Endpoint& endpoint() {
  static Endpoint e;
  return e;
}

void print_like_sm_listen(std::string_view bytes) {
  smws::event::Scan scan;
  if (!smws::event::scan(bytes, &scan)) {
    FUZZ_CHECK(!scan.error.empty());
    return;
  }
  std::string line;
  smws::event::append_single_line(&line, smws::event::trim(bytes));
  FUZZ_CHECK(line.find_first_of("\r\n") == std::string::npos);
  auto a = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  auto b = nlohmann::json::parse(line, nullptr, false);
  FUZZ_CHECK(!a.is_discarded() && a == b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  smws::fuzz::Input input(data, size);
  const size_t max_size = 1 + input.byte();
  const size_t split = input.byte();
  const std::string_view bytes = input.rest();
  std::string_view parts[2] = {bytes, {}};
  size_t count = 1;
  if (split > 0 && split < bytes.size()) {
    parts[0] = bytes.substr(0, split);
    parts[1] = bytes.substr(split);
    count = 2;
  }
  auto& ep = endpoint();
  size_t sent = 0;
  FUZZ_CHECK(ep.sender.send_batch(parts, count, &sent).ok());
  FUZZ_CHECK(sent == count);

  smws::DatagramBatch batch(4, max_size);
  size_t got = 0;
  while (got < count) {
    size_t n = 0;
    FUZZ_CHECK(batch.receive(ep.receiver, &n, /*wait=*/true).ok());
    FUZZ_CHECK(n > 0);  // sent above; a timeout here is a lost datagram
    for (size_t i = 0; i < n; ++i, ++got) {
      FUZZ_CHECK(got < count);
      const auto& want = parts[got];
      FUZZ_CHECK(batch.length(i) == want.size());
      FUZZ_CHECK(batch.truncated(i) == (want.size() > max_size));
      FUZZ_CHECK(batch.message(i) == want.substr(0, max_size));
      if (!batch.truncated(i)) print_like_sm_listen(batch.message(i));
    }
  }
  return 0;
}
