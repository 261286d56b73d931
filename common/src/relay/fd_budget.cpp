// SPDX-License-Identifier: Apache-2.0
#include "smws/relay/fd_budget.h"

#include <sys/resource.h>

#include <cerrno>
#include <string>

namespace smws::relay {
namespace {

uint64_t as_u64(rlim_t v) { return v == RLIM_INFINITY ? UINT64_MAX : static_cast<uint64_t>(v); }

}  // namespace

FdLimit raise_fd_limit() {
  FdLimit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    out.error = errno;
    return out;
  }
  out.was = as_u64(rl.rlim_cur);
  if (rl.rlim_cur != rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      rl = raised;
    } else {
      out.error = errno;
    }
  }
  out.soft = as_u64(rl.rlim_cur);
  out.hard = as_u64(rl.rlim_max);
  return out;
}

Status check_fd_budget(const FdLimit& limit, size_t max_clients, size_t handshakes, size_t reserve) {
  const uint64_t needed = uint64_t{max_clients} + handshakes + reserve;
  if (needed <= limit.soft) return Status::Ok();
  const uint64_t room = limit.soft > handshakes + reserve ? limit.soft - handshakes - reserve : 0;
  std::string text = "--max-clients " + std::to_string(max_clients) + " needs " +
                     std::to_string(needed) + " open files (" + std::to_string(max_clients) +
                     " clients + " + std::to_string(handshakes) + " connections in their handshake + " +
                     std::to_string(reserve) + " for the relay itself), but the open-file limit is " +
                     std::to_string(limit.soft) + " (hard limit " + std::to_string(limit.hard) +
                     "): raise the hard limit (ulimit -Hn " + std::to_string(needed) +
                     " as root; LimitNOFILE=65536 in a systemd unit, as the packaged one has)";
  text += room > 0 ? " or lower --max-clients to " + std::to_string(room) : std::string();
  return Status::Error(Status::kUsage, text);
}

}  // namespace smws::relay
