// SPDX-License-Identifier: Apache-2.0
// ws-relay's new parsers of hostile or hand-written input (issue 19): the
// --users file, a presented JWT, a --policy file and an --audit file's chain.
// The first byte picks which (mod 4); the rest is the input. Invariants:
// nothing throws or crashes; a refusal says why; a users file that parses
// has valid, unique names; a JWT is never accepted (the fuzzer cannot sign
// with the key); a policy that parses has 1 <= required <= kMaxRequired; an
// audit verdict that is not intact names a line within the file.
#include <string>
#include <string_view>
#include <unordered_set>

#include "fuzz_check.h"
#include "smws/auth/audit_chain.h"
#include "smws/auth/jwt.h"
#include "smws/auth/policy.h"
#include "smws/auth/users_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace smws::auth;
  smws::fuzz::Input input(data, size);
  const uint8_t which = input.byte() % 4;
  const std::string_view text = input.rest();
  if (which == 0) {
    UsersFile f;
    smws::Status st = UsersFile::parse(text, "fuzz", &f);
    if (!st.ok()) {
      FUZZ_CHECK(st.message.rfind("fuzz:", 0) == 0);
      return 0;
    }
    std::unordered_set<std::string> names;
    for (const auto& e : f.entries()) {
      FUZZ_CHECK(validate_user_name(e.name).ok());
      FUZZ_CHECK(names.insert(e.name).second);
    }
    (void)f.lookup(text);
  } else if (which == 1) {
    static JwtKeys* keys = [] {
      auto* k = new JwtKeys;
      (void)k->set_secret("fuzz-secret-fuzz-secret-fuzz-secret-32", "fuzz");
      return k;
    }();
    JwtOptions o;
    o.audience = "smws";
    JwtResult r = keys->verify(text, 1.8e9, o);
    FUZZ_CHECK(!r.ok);  // no input passes without the secret
    FUZZ_CHECK(r.ok || !r.reason.empty());
    std::string decoded;
    if (base64url_decode(text, &decoded)) FUZZ_CHECK(base64url_encode(decoded) == text);
  } else if (which == 2) {
    std::vector<PolicyRule> rules;
    smws::Status st = Policy::parse_rules(text, "fuzz", &rules);
    if (!st.ok()) {
      FUZZ_CHECK(st.message.rfind("fuzz:", 0) == 0);
      return 0;
    }
    Policy p;
    p.set_rules(rules);
    p.set_roles_enabled(true);
    for (const auto& r : rules) {
      FUZZ_CHECK(r.required >= 1 && r.required <= kMaxRequired);
      (void)p.may_decide(Identity{"alice", {"ops"}, "users", std::nullopt}, {r.action}, "alice");
      (void)p.policy_json({r.action, "other"});
    }
  } else {
    AuditVerdict v = verify_audit_text(text);
    if (!v.intact) FUZZ_CHECK(v.line >= 1 && v.line <= v.records && !v.what.empty());
    AuditChain c;
    (void)AuditChain::resume_text(text, "fuzz", &c);
  }
  return 0;
}
