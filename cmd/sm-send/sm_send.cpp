// SPDX-License-Identifier: Apache-2.0
#include "sm_send.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "smws/duration_text.h"
#include "smws/exit_code.h"
#include "smws/hitl.h"
#include "smws/hitl_refusal.h"
#include "smws/log.h"
#include "smws/ndjson.h"
#include "smws/protocol.h"
#include "smws/replay.h"
#include "smws/shutdown.h"
#include "smws/unix_datagram.h"

namespace smws {
namespace {

// A datagram batch goes out when it holds this many events or this many
// bytes, or when stdin has nothing more buffered (so a slow producer's lines
// are never held back). 1024 events (sendmmsg's UIO_MAXIOV) keep the per-call cost small
// against the per-datagram cost; 1 MiB bounds the memory a batch takes.
constexpr size_t kBatchEvents = 1024;
constexpr size_t kBatchBytes = 1 << 20;

// The reply to --wait-reply is one datagram; a decision carrying an edited
// action could exceed an event's 64 KiB only in theory, so leave room.
constexpr size_t kMaxReplySize = 1 << 20;

int usage_error(const std::string& message) {
  log::error(message);
  std::fprintf(stderr, "Run 'sm-send --help' for usage.\n");
  return kExitUsage;
}

std::string socket_path(const SmSendOptions& o) {
  return o.socket.empty() ? protocol::kDefaultSocketPath : o.socket;
}

// Opens the sending socket; large events need a send buffer to match
// (the kernel refuses a datagram larger than the sender's SO_SNDBUF).
SocketStatus open_sender(const SmSendOptions& o, UnixDatagramSocket* sock) {
  auto st = UnixDatagramSocket::open(sock);
  if (st.ok() && o.max_size > event::kDefaultMaxSize) {
    int bytes = static_cast<int>(std::min<size_t>(o.max_size * 2 + 4096, 1u << 30));
    ::setsockopt(sock->fd(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  }
  return st;
}

std::string too_big_message(size_t size, size_t max) {
  return "event is " + std::to_string(size) + " bytes as sent, over the " + std::to_string(max) +
         "-byte limit (--max-size); not sent";
}

void write_stdout(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EPIPE or worse: the exit code still tells the answer
    text.remove_prefix(static_cast<size_t>(n));
  }
}

// ---------------------------------------------------------------------------
// --wait-reply: a socket for the answer, that only the relay can answer on.
//
// Where it lives decides who can reach it:
//   --reply-dir DIR (SM_REPLY_DIR), or else a `reply` directory beside the
//     event socket (the package's /run/smws/reply): shared directories made
//     so the relay, running as another user, can answer. The socket is 0660
//     (the directory is setgid to the relay's group and sticky).
//   otherwise $TMPDIR or /tmp, the socket 0600: the relay must run as this
//     user (or root), as in `sm-listen | ws-relay` from one shell.
// The `reply` directory is taken only when nobody but the listener's user
// (or root) can have made it: the event socket's directory and the reply
// directory are owned by the socket's owner or root, the first writable by
// no one else, the second by no one outside its group. So a `reply` beside
// the default socket in /tmp (anyone can make /tmp/reply) is never used.
// In every case the kernel tells us who sent each datagram (SO_PASSCRED),
// and only these are believed: this user, root and, for a shared
// directory, the owner of the event socket (the listener, which runs with
// the relay). Anyone else in the group is ignored, with a warning; so is,
// in a shared directory, a decision that does not name its interrupt.

struct ReplyPlace {
  std::string dir;
  bool shared = false;  // a directory meant for other users' replies
  long listener_uid = -1;  // owner of the event socket (shared only)
};

// The owner of the event socket, when it is a socket (not followed through
// a symlink); -1 otherwise.
long socket_owner(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return -1;
  return static_cast<long>(st.st_uid);
}

// dir is a real directory (not a symlink) owned by uid or root, with none
// of the `forbidden` write bits.
bool is_owned_dir(const std::string& dir, long uid, mode_t forbidden) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  const long owner = static_cast<long>(st.st_uid);
  return (owner == uid || owner == 0) && (st.st_mode & forbidden) == 0;
}

// 0 when dir is a directory we may create files in, else the errno why not.
int writable_dir_error(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  return ::access(dir.c_str(), W_OK | X_OK) == 0 ? 0 : errno;
}

std::string without_trailing_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

ReplyPlace reply_place(const SmSendOptions& o) {
  const std::string socket = socket_path(o);
  const long listener = socket_owner(socket);
  if (!o.reply_dir.empty()) return {without_trailing_slashes(o.reply_dir), true, listener};
  const size_t slash = socket.rfind('/');
  const std::string socket_dir = slash == std::string::npos ? "." : socket.substr(0, slash + 1);
  const std::string beside = socket_dir + "reply";
  if (listener >= 0 && is_owned_dir(socket_dir, listener, S_IWGRP | S_IWOTH) &&
      is_owned_dir(beside, listener, S_IWOTH) && writable_dir_error(beside) == 0) {
    return {beside, true, listener};
  }
  std::string dir = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t && *t && std::strlen(t) < 60) dir = t;
  return {without_trailing_slashes(dir), false, -1};
}

// The uids whose datagrams count as the relay's answer.
std::vector<long> trusted_repliers(const ReplyPlace& place) {
  std::vector<long> uids = {static_cast<long>(::geteuid()), 0};
  if (place.shared && place.listener_uid >= 0) uids.push_back(place.listener_uid);
  return uids;
}

// A sender killed with SIGKILL cannot remove its reply socket. The next
// --wait-reply removes such leftovers: files named like ours, owned by this
// user, that are sockets nobody is bound to (connect() is refused). A live
// one (a sender still waiting) accepts the probe and is left alone.
void sweep_stale_reply_sockets(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  int probed = 0;
  while (dirent* entry = ::readdir(d)) {
    std::string_view name = entry->d_name;
    if (name.rfind("sm-reply-", 0) != 0 || name.size() < 15 ||
        name.substr(name.size() - 5) != ".sock") {
      continue;
    }
    if (++probed > 64) break;  // bound the start-up cost
    std::string path = dir + "/" + std::string(name);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid()) {
      continue;
    }
    UnixDatagramSocket probe;
    if (!UnixDatagramSocket::open(&probe).ok()) break;
    auto r = probe.connect(path);
    if (r.code == SocketStatus::kNoListener && r.err == ECONNREFUSED) {
      ::unlink(path.c_str());
      log::note(2, "removed stale reply socket " + path);
    }
  }
  ::closedir(d);
}

// A path that no one else uses: pid plus 64 random bits.
std::string reply_socket_path(const std::string& dir) {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<uint64_t>(::getpid()) << 32);
  }
  char name[64];
  std::snprintf(name, sizeof name, "/sm-reply-%d-%016llx.sock", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(r));
  return dir + name;
}

// --wait-reply's interrupt_id when the event has none: 128 bits from
// getrandom(2), so that nobody who sees other interrupts (every viewer of the
// relay sees their ids) can guess ours and answer it. No fallback to a clock
// or a pid: an id someone can guess is worse than no event.
constexpr size_t kInterruptIdBytes = 16;

bool random_interrupt_id(std::string* id) {
  unsigned char bytes[kInterruptIdBytes];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  *id = "sm-";
  for (unsigned char b : bytes) {
    *id += kHex[b >> 4];
    *id += kHex[b & 15];
  }
  return true;
}

SocketStatus bind_reply_socket(const ReplyPlace& place, UnixDatagramSocket* reply) {
  if (int err = writable_dir_error(place.dir); err != 0) {
    return SocketStatus::Error(err == EACCES || err == EPERM ? SocketStatus::kPermission
                                                            : SocketStatus::kNotFound,
                               err, "reply directory " + place.dir + ": " + std::strerror(err));
  }
  sweep_stale_reply_sockets(place.dir);
  SocketStatus st;
  for (int attempt = 0; attempt < 5; ++attempt) {
    st = UnixDatagramSocket::bind(reply_socket_path(place.dir), place.shared ? 0660 : 0600, reply);
    if (st.code != SocketStatus::kInUse) break;
  }
  if (st.ok()) st = reply->pass_credentials();
  return st;
}

// Waits for the decision on `reply`; prints it on stdout.
int wait_for_reply(const SmSendOptions& o, const UnixDatagramSocket& reply,
                   const std::string& interrupt_id, const ReplyPlace& place) {
  const std::vector<long> trusted = trusted_repliers(place);
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.wait_reply));
  DatagramBatch batch = DatagramBatch::with_credentials(1, kMaxReplySize);
  for (;;) {
    if (shutdown::requested()) {
      // Not 0: a script running `sm-send --wait-reply ... && deploy` must not
      // go on when the wait was interrupted. 75 is "nobody answered".
      log::warn("interrupted while waiting for a reply");
      return kExitTempFail;
    }
    auto left = std::chrono::duration<double, std::milli>(deadline - Clock::now()).count();
    if (left <= 0) {
      log::error("no reply within " + duration_text(o.wait_reply) + " (--wait-reply)");
      return kExitTempFail;
    }
    pollfd fds[2] = {{reply.fd(), POLLIN, 0}, {shutdown::fd(), POLLIN, 0}};
    int timeout_ms = static_cast<int>(std::min(std::ceil(left), 1e9));
    int r = ::poll(fds, shutdown::fd() >= 0 ? 2 : 1, timeout_ms);
    if (r <= 0) continue;  // timeout, or EINTR: the loop re-checks both
    size_t n = 0;
    auto st = batch.receive(reply, &n);
    if (!st.ok()) {
      log::error("reply socket: " + st.message);
      return kExitIoErr;
    }
    for (size_t i = 0; i < n; ++i) {
      const long uid = batch.sender_uid(i);
      if (std::find(trusted.begin(), trusted.end(), uid) == trusted.end()) {
        log::warn("ignoring a reply from uid " + std::to_string(uid) + ": only " +
                  (place.shared ? "the relay (the owner of " + socket_path(o) + "), " : std::string()) +
                  "this user or root may answer");
        continue;
      }
      if (batch.truncated(i)) {
        log::warn("ignoring a reply of " + std::to_string(batch.length(i)) + " bytes (too large)");
        continue;
      }
      auto text = event::trim(batch.message(i));
      auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        log::warn("ignoring a reply that is not a JSON object: " + event::excerpt(text));
        continue;
      }
      auto type = j.find("type");
      const bool is_decision = type != j.end() && type->is_string() && *type == "decision";
      const bool is_error = type != j.end() && type->is_string() && *type == "error";
      if (!is_decision && !is_error) {
        log::warn("ignoring a reply that is not a decision: " + event::excerpt(text));
        continue;
      }
      // Only a reply that names our interrupt is believed. Anyone who could
      // see an interrupt's reply_to could send a second, harmless interrupt
      // with our reply_to and have it approved: its decision would arrive
      // here, for another interrupt_id. Our id is unguessable (we made it,
      // 128 random bits, unless the caller gave one), so a reply naming it
      // is an answer to this request.
      auto id = j.find("interrupt_id");
      if (id == j.end() || !id->is_string()) {
        log::warn(std::string("ignoring a") + (is_error ? "n error" : " decision") + " that names no interrupt_id");
        continue;
      }
      if (*id != interrupt_id) {
        log::warn(std::string("ignoring a") + (is_error ? "n error" : " decision") + " for another interrupt (" +
                  event::excerpt(id->get<std::string>()) + ")");
        continue;
      }
      if (is_error) {
        // The relay refused the interrupt (hitl_refusal.h): say why and stop
        // waiting, with the exit code of the reason.
        auto refusal = parse_interrupt_refusal(j);
        const std::string why = refusal && !refusal->error.empty() ? refusal->error : std::string("no reason given");
        log::error("the relay refused the interrupt: " + event::excerpt(why) +
                   (refusal && !refusal->reason_text.empty() ? " (" + event::excerpt(refusal->reason_text) + ")" : ""));
        return interrupt_refusal_exit_code(refusal ? refusal->reason : InterruptRefusalReason::kOther);
      }
      std::string line;
      event::append_single_line(&line, text);
      line += '\n';
      write_stdout(line);
      DecisionExit verdict = decision_exit_code(j);
      if (verdict.code == kExitTempFail) log::warn(verdict.message);
      else if (verdict.code == kExitDataErr) log::error(verdict.message);
      else log::note(1, verdict.message);
      return verdict.code;
    }
  }
}

// ---------------------------------------------------------------------------
// One event from the arguments (TYPE FIELD... or --json).

int send_one(const SmSendOptions& o) {
  std::string source;
  std::string error;
  if (o.json) {
    source = std::string(event::trim(*o.json));
  } else {
    event::BuildSpec spec;
    spec.type = o.type;
    spec.machine_id = o.machine_id;
    spec.state = o.state;
    spec.previous_state = o.previous_state;
    spec.fields = o.fields;
    if (!event::build(spec, &source, &error)) return usage_error(error);
  }
  event::Scan scan;
  if (!event::scan(source, &scan)) {
    log::error((o.json ? "--json: " : "event: ") + scan.error);
    return kExitDataErr;
  }

  std::string datagram;
  if (scan.has_timestamp) {
    datagram = source;
  } else {
    char ts[32];
    event::append_with_field(&datagram, source, "timestamp",
                             {ts, event::format_now_timestamp(ts)});
  }

  UnixDatagramSocket reply;
  std::string interrupt_id;
  ReplyPlace place;
  if (o.wait_reply >= 0) {
    place = reply_place(o);
    auto st = bind_reply_socket(place, &reply);
    if (!st.ok()) {
      log::error("cannot create the reply socket: " + st.message);
      return st.code == SocketStatus::kPermission ? kExitNoPerm : kExitCantCreate;
    }
    auto quoted = event::json_quote(reply.path());
    if (scan.has_reply_to) {
      if (!event::set_member(&datagram, "reply_to", quoted, &error)) {
        log::error("event: " + error);
        return kExitDataErr;
      }
    } else {
      std::string with_reply;
      event::append_with_field(&with_reply, datagram, "reply_to", quoted);
      datagram.swap(with_reply);
    }
    auto j = nlohmann::json::parse(datagram, nullptr, false);
    auto id = j.is_object() ? j.find("interrupt_id") : j.end();
    if (j.is_object() && id != j.end()) {
      if (!id->is_string() || id->get_ref<const std::string&>().empty()) {
        log::error("event: interrupt_id must be a non-empty string (--wait-reply matches the reply by it)");
        return kExitDataErr;
      }
      interrupt_id = id->get<std::string>();
    } else {
      if (!random_interrupt_id(&interrupt_id)) {
        log::error("cannot make an interrupt_id: getrandom: " + log::errno_text(errno));
        return kExitSoftware;
      }
      std::string with_id;
      event::append_with_field(&with_id, datagram, "interrupt_id", event::json_quote(interrupt_id));
      datagram.swap(with_id);
    }
  }

  if (datagram.size() > o.max_size) {
    log::error(too_big_message(datagram.size(), o.max_size));
    return kExitDataErr;
  }

  const std::string path = socket_path(o);
  UnixDatagramSocket sock;
  auto st = open_sender(o, &sock);
  if (st.ok()) st = sock.connect(path);
  if (st.ok()) st = sock.send(datagram, &shutdown::requested);
  if (!st.ok()) {
    if (st.code == SocketStatus::kCancelled) return o.wait_reply >= 0 ? kExitTempFail : kExitOk;
    if (st.code == SocketStatus::kNoListener && !o.strict && o.wait_reply < 0) {
      log::note(1, st.message + "; event dropped (--strict makes this an error)");
      return kExitOk;
    }
    if (st.code == SocketStatus::kTooBig) {
      log::error("event of " + std::to_string(datagram.size()) + " bytes: " + st.message);
    } else if (st.code == SocketStatus::kNoListener && o.wait_reply >= 0) {
      log::error(st.message + "; nobody can answer --wait-reply");
    } else {
      log::error(st.message);
    }
    return exit_code_for(st);
  }
  log::note(2, "sent " + std::to_string(datagram.size()) + " bytes to " + path);
  if (o.wait_reply < 0) return kExitOk;
  return wait_for_reply(o, reply, interrupt_id, place);
}

// ---------------------------------------------------------------------------
// Stdin mode: NDJSON lines → one datagram each, batched with sendmmsg.
// --replay is the same path with a schedule: a line whose deadline has come
// joins the batch like a stdin line (no clock read, no system call of its
// own); one that is not yet due first sends the batch, then sleeps until its
// deadline.

class StdinSender {
 public:
  explicit StdinSender(const SmSendOptions& o)
      : o_(o), path_(socket_path(o)), schedule_(o.speed, o.max_gap) {
    entries_.reserve(kBatchEvents);
    views_.reserve(kBatchEvents);
    arena_.reserve(kBatchBytes + o.max_size + 64);
  }

  int run() {
    const bool replay = o_.replay.has_value();
    int fd = STDIN_FILENO;
    if (replay && *o_.replay != "-") {
      fd = ::open(o_.replay->c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        log::error("cannot open " + *o_.replay + ": " + log::errno_text(err));
        if (err == EACCES || err == EPERM) return kExitNoPerm;
        return err == ENOENT || err == ENOTDIR ? kExitNoInput : kExitIoErr;
      }
    }
    auto st = open_sender(o_, &sock_);
    if (!st.ok()) {
      log::error(st.message);
      return exit_code_for(st);
    }
    start_ = now_ = Clock::now();
    int code = kExitOk;
    for (;;) {
      code = send_lines(fd, replay);
      if (code != kExitOk || stopped_ || !o_.loop) break;
      if (sent_in_pass_ == 0) {
        log::warn("the recording holds no event to send; not looping");
        break;
      }
      if (::lseek(fd, 0, SEEK_SET) < 0) {
        log::error("cannot rewind " + *o_.replay + ": " + log::errno_text(errno));
        code = kExitIoErr;
        break;
      }
      ++pass_;
      sent_in_pass_ = 0;
      schedule_.restart();
    }
    if (fd != STDIN_FILENO) ::close(fd);
    if (code != kExitOk) return code;
    log::note(1, "sent " + std::to_string(sent_) + " events, " + std::to_string(bad_) +
                     " bad lines, " + std::to_string(dropped_) + " dropped (no listener)" +
                     (pass_ > 0 ? ", " + std::to_string(pass_ + 1) + " passes" : std::string()));
    return bad_ > 0 ? kExitDataErr : kExitOk;
  }

 private:
  using Clock = std::chrono::steady_clock;

  // One pass over fd. Returns 0 at its end (or on a signal: stopped_ is
  // set), else the exit code of a fatal error.
  int send_lines(int fd, bool replay) {
    const char* what = replay && *o_.replay != "-" ? o_.replay->c_str() : "stdin";
    ndjson::LineReader reader(fd, o_.max_size, 256 * 1024, &shutdown::requested);
    ndjson::LineReader::Line line;
    event::Scan scan;
    for (;;) {
      if (fatal_ != kExitOk) return fatal_;
      if (stopped_) break;
      auto status = reader.next(&line);
      if (status == ndjson::LineReader::Status::kLine) {
        if (replay) add_replayed(line, &scan);
        else add(line, &scan);
        if (entries_.size() >= kBatchEvents || arena_.size() >= kBatchBytes) flush();
        continue;
      }
      if (status == ndjson::LineReader::Status::kTooLong) {
        bad(line.number, "longer than " + std::to_string(o_.max_size) +
                             " bytes, the --max-size limit; skipped");
        continue;
      }
      // kNeedRead or kEof: stdin has nothing more buffered, so whatever is
      // batched goes out now (the views point into the reader's buffer, which
      // fill() may move).
      flush();
      if (fatal_ != kExitOk) return fatal_;
      if (stopped_ || status == ndjson::LineReader::Status::kEof) break;
      auto fill = reader.fill();
      if (fill == ndjson::LineReader::Fill::kCancelled) {
        stopped_ = true;
        break;
      }
      if (fill == ndjson::LineReader::Fill::kError) {
        log::error(std::string("cannot read ") + what + ": " + log::errno_text(reader.error()));
        return kExitIoErr;
      }
    }
    return kExitOk;
  }
  // A batched datagram: either a view of the stdin buffer (the line already
  // had a timestamp) or a slice of arena_ (the line with one spliced in).
  struct Entry {
    const char* data;  // nullptr: in arena_ at offset
    size_t offset;
    size_t size;
    size_t line;
  };

  void add(const ndjson::LineReader::Line& line, event::Scan* scan) {
    auto text = event::trim(line.text);
    if (!event::scan(text, scan)) {
      bad(line.number, scan->error + "; skipped");
      return;
    }
    if (scan->has_timestamp) {
      if (text.size() > o_.max_size) return bad(line.number, too_big(text.size()));
      entries_.push_back({text.data(), 0, text.size(), line.number});
      return;
    }
    char ts[32];
    size_t offset = arena_.size();
    event::append_with_field(&arena_, text, "timestamp", {ts, event::format_now_timestamp(ts)});
    size_t size = arena_.size() - offset;
    if (size > o_.max_size) {
      arena_.resize(offset);
      return bad(line.number, too_big(size));
    }
    entries_.push_back({nullptr, offset, size, line.number});
  }

  std::string too_big(size_t size) const {
    return "event is " + std::to_string(size) + " bytes as sent, over the " +
           std::to_string(o_.max_size) + "-byte limit (--max-size); skipped";
  }

  void bad(size_t line, const std::string& why) {
    if (pass_ > 0) return;  // --loop: each bad line is reported (and counted) once
    ++bad_;
    log::error("line " + std::to_string(line) + ": " + why);
  }

  // --replay: the line joins the batch once its deadline has come.
  void add_replayed(const ndjson::LineReader::Line& line, event::Scan* scan) {
    replay::classify(line.text, scan, &replayed_);
    if (replayed_.kind == replay::LineKind::kBlank) return;
    if (replayed_.kind == replay::LineKind::kBad) return bad(line.number, replayed_.error + "; skipped");
    const auto deadline = start_ + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(schedule_.next(replayed_.timestamp)));
    if (deadline > now_ && !wait_until(deadline)) return;
    char ts[32];
    size_t offset = arena_.size();
    replay::build_datagram(&arena_, replayed_, {ts, event::format_now_timestamp(ts)},
                           o_.keep_timestamps);
    size_t size = arena_.size() - offset;
    if (size > o_.max_size) {
      arena_.resize(offset);
      return bad(line.number, too_big(size));
    }
    entries_.push_back({nullptr, offset, size, line.number});
    ++sent_in_pass_;
  }

  // Sends what is batched, then sleeps until deadline (or a signal: then
  // stopped_ is set and false returned). A deadline already past costs one
  // clock read: now_ remembers it, so the lines after it that are due as
  // well cost none.
  bool wait_until(Clock::time_point deadline) {
    now_ = Clock::now();
    if (deadline <= now_) return true;
    flush();
    for (;;) {
      if (shutdown::requested() || stopped_) {
        stopped_ = true;
        return false;
      }
      now_ = Clock::now();
      if (deadline <= now_) return true;
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now_).count();
      timespec timeout{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
      pollfd fds[1] = {{shutdown::fd(), POLLIN, 0}};
      ::ppoll(fds, shutdown::fd() >= 0 ? 1 : 0, &timeout, nullptr);
    }
  }

  // Sends the batch; on return it is empty. Sets fatal_ to stop the run.
  void flush() {
    if (entries_.empty()) return;
    views_.clear();
    for (const auto& e : entries_) {
      views_.emplace_back(e.data ? e.data : arena_.data() + e.offset, e.size);
    }
    size_t done = 0;
    while (done < views_.size() && fatal_ == kExitOk) {
      if (!connected_ && !connect()) {
        dropped_ += views_.size() - done;
        break;
      }
      size_t n = 0;
      auto st = sock_.send_batch(views_.data() + done, views_.size() - done, &n, &shutdown::requested);
      done += n;
      sent_ += n;
      if (st.ok()) break;
      switch (st.code) {
        case SocketStatus::kNoListener:
          // The listener went away (or was replaced): connect again, once.
          connected_ = false;
          if (!connect()) {
            dropped_ += views_.size() - done;
            done = views_.size();
          }
          break;
        case SocketStatus::kTooBig:
          bad(entries_[done].line, "the socket refused " + std::to_string(views_[done].size()) +
                                       " bytes (" + st.message + "); skipped");
          ++done;
          break;
        case SocketStatus::kCancelled:
          stopped_ = true;  // SIGINT/SIGTERM: end as if stdin had ended
          done = views_.size();
          break;
        default:
          log::error(st.message);
          fatal_ = exit_code_for(st);
          break;
      }
    }
    entries_.clear();
    arena_.clear();
  }

  bool connect() {
    auto st = sock_.connect(path_);
    if (st.ok()) {
      connected_ = true;
      if (warned_no_listener_) log::note(1, "listener back on " + path_);
      warned_no_listener_ = false;
      return true;
    }
    if (st.code == SocketStatus::kNoListener && !o_.strict) {
      if (!warned_no_listener_) {
        log::note(1, st.message + "; dropping events until one binds it");
        warned_no_listener_ = true;
      }
      return false;
    }
    log::error(st.message);
    fatal_ = exit_code_for(st);
    return false;
  }

  const SmSendOptions& o_;
  const std::string path_;
  UnixDatagramSocket sock_;
  bool connected_ = false;
  bool warned_no_listener_ = false;
  bool stopped_ = false;
  int fatal_ = kExitOk;
  std::vector<Entry> entries_;
  std::vector<std::string_view> views_;
  std::string arena_;
  size_t sent_ = 0, bad_ = 0, dropped_ = 0;
  // --replay
  replay::Schedule schedule_;
  replay::Line replayed_;
  Clock::time_point start_, now_;
  size_t pass_ = 0;          // --loop passes completed
  size_t sent_in_pass_ = 0;  // events batched in this pass
};

}  // namespace

void setup_sm_send(CLI::App& app, SmSendOptions& o) {
  app.footer(
      "FIELD forms (HTTPie): key=value (string into \"data\"), key:=json (raw JSON into \"data\"),\n"
      "@key=value / @key:=json (top-level members). A timestamp is added when missing.\n"
      "--wait-reply adds an unguessable interrupt_id unless the event has one, and takes only\n"
      "a reply that names it.\n"
      "Exit: 0 sent (or no listener), 1 rejected, 64 usage, 65 bad event (or the relay refused it as\n"
      "invalid), 66 --replay FILE cannot be read, 69 no listener (--strict, --wait-reply),\n"
      "73 cannot create the reply socket,\n"
      "74 the relay could not record it (audit), 75 no reply in time (or the relay's table was full),\n"
      "77 permission.");
  app.add_option("TYPE", o.type, "Event type, or - to send NDJSON lines from stdin")
      ->type_name("")
      ->each([&o](const std::string&) { o.type_given = true; });
  app.add_option("FIELD", o.fields, "key=value, key:=json, @key=value, @key:=json")
      ->type_name("");
  app.add_option_function<std::string>(
      "-m,--machine", [&o](const std::string& v) { o.machine_id = v; }, "machine_id of the event")
      ->type_name("ID");
  app.add_option_function<std::string>(
      "--state", [&o](const std::string& v) { o.state = v; }, "state of the event")
      ->type_name("S");
  app.add_option_function<std::string>(
      "--previous", [&o](const std::string& v) { o.previous_state = v; }, "previous_state of the event")
      ->type_name("S");
  app.add_option_function<std::string>(
      "--json", [&o](const std::string& v) { o.json = v; },
      "Send this JSON object as is (a timestamp is added when missing)")
      ->type_name("JSON");
  app.add_option("--socket", o.socket,
                 std::string("Datagram socket to send to (default ") + protocol::kDefaultSocketPath + ")")
      ->envname(protocol::kSocketEnv)
      ->type_name("PATH");
  app.add_flag("--strict", o.strict, "Exit 69 when no listener is bound to the socket");
  app.add_option("--max-size", o.max_size, "Largest datagram sent, in bytes (default 65536)")
      ->type_name("BYTES")
      ->check(CLI::Range(size_t{1}, size_t{64} << 20).description(""));
  app.add_option("--wait-reply", o.wait_reply,
                 "Wait up to SECONDS for a reply (a HITL decision) and print it")
      ->type_name("SECONDS")
      ->check(CLI::Validator(kSeconds).description(""));
  app.add_option("--reply-dir", o.reply_dir,
                 "Directory for the --wait-reply socket (default: a 'reply' directory beside the "
                 "event socket, else $TMPDIR or /tmp)")
      ->envname("SM_REPLY_DIR")
      ->type_name("DIR");
  app.add_option_function<std::string>(
      "--replay", [&o](const std::string& v) { o.replay = v; },
      "Re-send a recording (NDJSON as sm-listen prints it, - for stdin) with the spacing of "
      "its timestamps")
      ->type_name("FILE");
  app.add_option("--speed", o.speed, "--replay X times faster (default 1)")
      ->type_name("X")
      ->check(CLI::Validator(
          [](const std::string& v) {
            char* end = nullptr;
            double x = std::strtod(v.c_str(), &end);
            return end != v.c_str() && *end == '\0' && x > 0 && std::isfinite(x)
                       ? std::string()
                       : "must be a number > 0";
          },
          ""))
      ->each([&o](const std::string&) { o.replay_flags_given = true; });
  app.add_option("--max-gap", o.max_gap, "--replay: shorten longer silences to SECONDS")
      ->type_name("SECONDS")
      ->check(CLI::Validator(kSeconds).description(""))
      ->each([&o](const std::string&) { o.replay_flags_given = true; });
  app.add_flag("--loop", o.loop, "--replay: start over at the end of the file");
  app.add_flag("--keep-timestamps", o.keep_timestamps,
               "--replay: send the recorded timestamps, not the time of sending");
  add_common_flags(app, o.common);
}

int run_sm_send(const SmSendOptions& o) {
  if (o.replay) {
    if (o.json || o.type_given || o.machine_id || o.state || o.previous_state || !o.fields.empty()) {
      return usage_error("--replay sends the recording's lines: TYPE, FIELD, --json, -m, --state "
                         "and --previous do not apply");
    }
    if (o.wait_reply >= 0) {
      return usage_error("--wait-reply waits for one answer, so it needs a single event, not --replay");
    }
    if (o.loop && *o.replay == "-") {
      return usage_error("--loop starts the recording over, and stdin cannot be read twice: "
                         "give --replay a FILE");
    }
    return StdinSender(o).run();
  }
  if (o.replay_flags_given || o.loop || o.keep_timestamps) {
    return usage_error("--speed, --max-gap, --loop and --keep-timestamps apply to --replay only");
  }
  const bool stdin_mode = o.type == "-";
  const bool has_event_flags = o.machine_id || o.state || o.previous_state || !o.fields.empty();
  if (o.json && o.type_given) {
    return usage_error("give either TYPE or --json, not both");
  }
  if (o.json && has_event_flags) {
    return usage_error("--json sends the object as is: FIELD, -m, --state and --previous do not apply");
  }
  if (!o.json && !o.type_given) {
    return usage_error("nothing to send: give TYPE [FIELD ...], --json JSON, or - for NDJSON on stdin");
  }
  if (stdin_mode && has_event_flags) {
    return usage_error("stdin mode (-) sends each line as is: FIELD, -m, --state and --previous do not apply");
  }
  if (stdin_mode && o.wait_reply >= 0) {
    return usage_error("--wait-reply waits for one answer, so it needs a single event, not stdin mode");
  }
  if (stdin_mode) return StdinSender(o).run();
  return send_one(o);
}

}  // namespace smws
