#include "smws/net/upgrade_admission.h"

#include <optional>

namespace smws::net {

Admission admit_upgrade(const HttpRequest& request, const AdmissionRules& rules,
                        size_t open_clients, bool shutting_down) {
  Admission out;
  if (!is_upgrade_request(request)) {
    out.verdict = Admission::Verdict::kNotUpgrade;
    out.reply = text_reply(426, "this path serves WebSocket only (Upgrade: websocket)");
    out.reply.headers.emplace_back("Upgrade", "websocket");
    return out;
  }
  std::optional<HttpReply> refusal = check_upgrade(request);
  if (!refusal && !origin_allowed(request, rules.allow_origins)) {
    refusal = text_reply(403, "origin not allowed: " + *request.header("origin"));
  }
  if (!refusal && !token_ok(request, rules.token)) {
    refusal = text_reply(401, "a valid token is required (Authorization: Bearer or ?token=)");
    refusal->headers.emplace_back("WWW-Authenticate", "Bearer");
  }
  if (!refusal && (open_clients >= rules.max_clients || shutting_down)) {
    refusal = text_reply(503, shutting_down ? "shutting down" : "too many clients");
    refusal->headers.emplace_back("Retry-After", "5");
  }
  if (refusal) {
    out.verdict = Admission::Verdict::kRefuse;
    out.reply = std::move(*refusal);
  }
  return out;
}

}  // namespace smws::net
