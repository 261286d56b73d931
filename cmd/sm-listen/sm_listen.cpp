// SPDX-License-Identifier: Apache-2.0
#include "sm_listen.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unordered_map>

#include "smws/exit_code.h"
#include "smws/log.h"
#include "smws/ndjson.h"
#include "smws/protocol.h"
#include "smws/shutdown.h"
#include "smws/unix_datagram.h"

namespace smws {
namespace {

using Clock = std::chrono::steady_clock;

// recvmmsg batch: the kernel queues at most net.unix.max_dgram_qlen (10 by
// default) datagrams per socket, so 64 slots always take all that is pending.
// Each slot holds a whole --max-size datagram; with a huge --max-size, fewer
// slots keep the buffers within kBatchMemory.
constexpr size_t kBatchSize = 64;
constexpr size_t kBatchMemory = 16 << 20;

size_t batch_slots(size_t max_size) {
  return std::max<size_t>(1, std::min(kBatchSize, kBatchMemory / max_size));
}

// Longest a blocking receive waits before the loop looks at its flags again
// (see loop()): bounds the shutdown delay in the one racy case.
constexpr double kTick = 0.1;

// A sender waits while our queue is full (see unix_datagram.h); a large
// receive buffer lets the kernel hold bursts of large events. The kernel caps
// it at net.core.rmem_max unless we may force it.
constexpr int kReceiveBuffer = 8 << 20;

// Invalid datagrams are reported one by one up to this many per second; the
// rest are counted and summarised, so a misbehaving sender cannot flood
// stderr (or slow the good events down).
constexpr int kReportsPerWindow = 10;
constexpr auto kReportWindow = std::chrono::seconds(1);

// Rate-limited reports of invalid datagrams.
class InvalidReporter {
 public:
  void report(uint64_t number, size_t size, const std::string& why, std::string_view bytes) {
    auto now = Clock::now();
    if (now - window_start_ >= kReportWindow) roll(now);
    if (shown_ < kReportsPerWindow) {
      ++shown_;
      log::warn("invalid datagram #" + std::to_string(number) + " (" + std::to_string(size) +
                " bytes): " + why + (bytes.empty() ? "" : ": " + event::excerpt(bytes)));
    } else {
      ++suppressed_;
    }
  }

  // Reports what the window held back once it is over; `force` at exit.
  void tick(bool force) {
    auto now = Clock::now();
    if (force || now - window_start_ >= kReportWindow) roll(now);
  }

 private:
  void roll(Clock::time_point now) {
    if (suppressed_ > 0) {
      log::warn(std::to_string(suppressed_) + " more invalid datagrams not shown");
    }
    window_start_ = now;
    shown_ = 0;
    suppressed_ = 0;
  }

  Clock::time_point window_start_{};
  int shown_ = 0;
  uint64_t suppressed_ = 0;
};

// User names for the "sender" of each event, from the kernel's uid.
//
// sm-listen reads /etc/passwd itself rather than calling getpwuid_r: the
// release binary is linked statically, and a static glibc's getpwuid_r
// loads the NSS modules (libnss_*.so) at run time, which works only with
// the exact glibc it was linked against and can crash with another. The
// cost: users known only through NSS (LDAP, sssd) are not named; their
// events carry "uid" and "pid" without "user" (docs/man/sm-listen.1).
// Names are cached; a uid not in the cache re-reads the file, at most once
// per kPasswdRereadSeconds, so a burst from an unknown uid costs one read.
constexpr double kPasswdRereadSeconds = 1.0;
constexpr size_t kMaxCachedUsers = 4096;

class UserNames {
 public:
  // The name of uid, or "" when /etc/passwd does not list it.
  const std::string& name(long uid) {
    auto it = names_.find(uid);
    if (it != names_.end()) return it->second;
    const auto now = Clock::now();
    if (!read_once_ || now - last_read_ >= std::chrono::duration<double>(kPasswdRereadSeconds)) {
      read_once_ = true;
      last_read_ = now;
      reread();
      it = names_.find(uid);
      if (it != names_.end()) return it->second;
    }
    static const std::string kNone;
    return kNone;
  }

 private:
  void reread() {
    std::ifstream in("/etc/passwd");
    std::string line;
    std::unordered_map<long, std::string> fresh;
    while (std::getline(in, line) && fresh.size() < kMaxCachedUsers) {
      // name:password:uid:gid:gecos:home:shell
      const size_t a = line.find(':');
      const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
      const size_t c = b == std::string::npos ? b : line.find(':', b + 1);
      if (c == std::string::npos || a == 0) continue;
      const std::string uid_text = line.substr(b + 1, c - b - 1);
      char* end = nullptr;
      const long uid = std::strtol(uid_text.c_str(), &end, 10);
      if (uid_text.empty() || *end != '\0' || uid < 0) continue;
      fresh.emplace(uid, line.substr(0, a));  // the first line for a uid wins, as getpwuid's
    }
    names_.swap(fresh);
  }

  std::unordered_map<long, std::string> names_;
  bool read_once_ = false;
  Clock::time_point last_read_{};
};

bool parse_mode(const std::string& text, mode_t* mode) {
  if (text.empty() || text.size() > 5) return false;
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 8);
  if (*end != '\0' || v < 0 || v > 07777) return false;
  *mode = static_cast<mode_t>(v);
  return true;
}

class Listener {
 public:
  explicit Listener(const SmListenOptions& o)
      : o_(o),
        out_(STDOUT_FILENO, 64 * 1024, &shutdown::requested),
        batch_(DatagramBatch::with_credentials(batch_slots(o.max_size), o.max_size)) {}

  int run() {
    mode_t mode = 0;
    if (!parse_mode(o_.mode, &mode)) {
      log::error("--mode '" + o_.mode + "' is not an octal file mode (e.g. 0660)");
      return kExitUsage;
    }
    const std::string path = o_.socket.empty() ? protocol::kDefaultSocketPath : o_.socket;
    auto st = UnixDatagramSocket::bind(path, mode, &sock_);
    if (!st.ok()) {
      log::error(st.message);
      return exit_code_for(st);
    }
    // Every event gets the kernel's word on who sent it ("sender").
    if (auto cred = sock_.pass_credentials(); !cred.ok()) {
      log::error(cred.message);
      return kExitCantCreate;
    }
    int granted = sock_.set_receive_buffer(kReceiveBuffer);
    log::note(1, "listening on " + path + " (receive buffer " + std::to_string(granted) + " bytes)");

    int code = loop();
    invalid_reporter_.tick(true);
    log::note(1, "received " + std::to_string(received_) + " datagrams: " +
                     std::to_string(printed_) + " printed, " + std::to_string(filtered_) +
                     " filtered out by --type, " + std::to_string(invalid_) + " invalid");
    if (wakeups_ > 0) {
      log::note(2, "datagrams per receive call: " +
                       std::to_string(static_cast<double>(received_) / static_cast<double>(wakeups_)));
    }
    return code;  // sock_'s destructor removes the socket file
  }

 private:
  int loop() {
    auto idle = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::max(o_.idle_timeout, 0.0)));
    auto idle_deadline = Clock::now() + idle;
    // The receive blocks in recvmmsg itself (one system call per wake-up,
    // where poll + recvmmsg took two: wake-ups are what a burst costs, since
    // the kernel queues only ~10 datagrams per socket). A signal interrupts
    // it (EINTR); one that lands just before the call is seen at the next
    // tick, so shutdown takes at most kTick. The tick also paces the
    // --idle-timeout check and the invalid-report summary.
    double tick = kTick;
    if (o_.idle_timeout >= 0) tick = std::max(std::min(tick, o_.idle_timeout), 0.001);
    if (auto st = sock_.set_receive_timeout(tick); !st.ok()) {
      log::error(st.message);
      return kExitCantCreate;
    }
    bool drained = true;  // nothing was pending at the last receive
    for (;;) {
      if (shutdown::requested()) return finish();
      if (drained) {
        // Nothing pending: this is when output goes out.
        if (int code = flush(); code >= 0) return code;
        invalid_reporter_.tick(false);
        if (o_.idle_timeout >= 0 && Clock::now() >= idle_deadline) {
          log::note(1, "no event for " + std::to_string(o_.idle_timeout).substr(0, 8) +
                           " s (--idle-timeout)");
          return kExitOk;
        }
      }
      size_t n = 0;
      auto st = batch_.receive(sock_, &n, drained);
      if (!st.ok()) {
        log::error(st.message);
        return kExitIoErr;
      }
      drained = n < batch_.capacity();
      if (n > 0) ++wakeups_;
      for (size_t i = 0; i < n; ++i) {
        if (handle(i)) {
          idle_deadline = Clock::now() + idle;
          if (o_.count > 0 && printed_ >= o_.count) {
            log::note(1, "printed " + std::to_string(printed_) + " events (--count)");
            return finish();
          }
        }
        if (out_.status() != ndjson::Writer::Status::kOk) return finish();
      }
    }
  }

  // One datagram; true when it was printed.
  bool handle(size_t i) {
    ++received_;
    if (batch_.truncated(i)) {
      ++invalid_;
      invalid_reporter_.report(received_, batch_.length(i),
                               "over the " + std::to_string(o_.max_size) + "-byte limit (--max-size)",
                               {});
      return false;
    }
    auto bytes = batch_.message(i);
    if (!event::scan(bytes, &scan_)) {
      ++invalid_;
      invalid_reporter_.report(received_, bytes.size(), scan_.error, bytes);
      return false;
    }
    if (!o_.types.empty() &&
        std::find(o_.types.begin(), o_.types.end(), scan_.type) == o_.types.end()) {
      ++filtered_;
      return false;
    }
    std::string_view text = event::trim(bytes);
    if (text.find_first_of("\r\n") != std::string_view::npos) {
      line_.clear();
      event::append_single_line(&line_, text);
      text = line_;
    }
    sender_json(i);
    if (!scan_.has_sender) {
      event::append_with_field(&out_.buffer(), text, "sender", sender_);
    } else {
      // The datagram claims a sender: the kernel's replaces it (the slow
      // path, through a DOM; a forged claim is not worth a fast one).
      std::string replaced(text);
      std::string error;
      if (!event::set_member(&replaced, "sender", sender_, &error)) {
        ++invalid_;
        invalid_reporter_.report(received_, bytes.size(), error, bytes);
        return false;
      }
      out_.buffer() += replaced;
    }
    out_.end_line();
    ++printed_;
    return true;
  }

  // sender_ = {"uid":N,"user":"NAME","pid":N} from datagram i's
  // credentials (SO_PASSCRED); "user" left out when /etc/passwd does not
  // name the uid; null when the kernel gave no credentials (it always does
  // for a Unix socket with SO_PASSCRED; never trust a claim instead).
  void sender_json(size_t i) {
    const long uid = batch_.sender_uid(i);
    if (uid < 0) {
      sender_ = "null";
      return;
    }
    sender_ = "{\"uid\":" + std::to_string(uid);
    const std::string& name = users_.name(uid);
    if (!name.empty()) sender_ += ",\"user\":" + event::json_quote(name);
    sender_ += ",\"pid\":" + std::to_string(batch_.sender_pid(i)) + "}";
  }

  // Flushes stdout; returns the exit code when the run must end, else -1.
  int flush() {
    auto st = out_.flush();
    if (st == ndjson::Writer::Status::kOk) return -1;
    return finish();
  }

  // The exit code once the loop ends: a closed stdout (EPIPE) or a signal is
  // a clean end (0); another write error is 74.
  int finish() {
    auto st = out_.flush();
    if (st == ndjson::Writer::Status::kClosed) {
      log::note(1, "stdout closed; exiting");
      return kExitOk;
    }
    if (st == ndjson::Writer::Status::kError) {
      log::error("cannot write stdout: " + log::errno_text(out_.error()));
      return kExitIoErr;
    }
    return kExitOk;
  }

  const SmListenOptions& o_;
  UnixDatagramSocket sock_;
  ndjson::Writer out_;
  DatagramBatch batch_;
  event::Scan scan_;
  UserNames users_;
  std::string sender_;  // the current event's "sender" JSON
  std::string line_;    // scratch: an event with its raw CR/LF dropped
  InvalidReporter invalid_reporter_;
  uint64_t received_ = 0, printed_ = 0, filtered_ = 0, invalid_ = 0;
  uint64_t wakeups_ = 0;  // receive calls that returned datagrams
};

}  // namespace

void setup_sm_listen(CLI::App& app, SmListenOptions& o) {
  app.footer(
      "Exit: 0 done (--count, --idle-timeout, SIGINT/SIGTERM, stdout closed), 64 usage,\n"
      "69 socket in use by a live listener, 73 cannot create the socket (or the path is\n"
      "not a socket), 74 cannot write stdout, 77 permission denied.");
  app.add_option("--socket", o.socket,
                 std::string("Datagram socket to bind (default ") + protocol::kDefaultSocketPath + ")")
      ->envname(protocol::kSocketEnv)
      ->type_name("PATH");
  app.add_option("--mode", o.mode, "File mode of the socket, octal (default 0660)")
      ->type_name("MODE");
  app.add_option("--type", o.types, "Print only events of this type (repeatable)")
      ->type_name("TYPE")
      ->allow_extra_args(false);  // one TYPE per --type
  app.add_option("--count", o.count, "Exit after printing N events")
      ->type_name("N")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX).description(""));
  app.add_option("--idle-timeout", o.idle_timeout, "Exit after SECONDS without an event")
      ->type_name("SECONDS")
      ->check(CLI::Validator(kSeconds).description(""));
  app.add_option("--max-size", o.max_size,
                 "Largest datagram accepted, in bytes (default 65536); larger ones are invalid")
      ->type_name("BYTES")
      ->check(CLI::Range(size_t{1}, size_t{64} << 20).description(""));
  add_common_flags(app, o.common);
}

int run_sm_listen(const SmListenOptions& o) { return Listener(o).run(); }

}  // namespace smws
