// SPDX-License-Identifier: Apache-2.0
// Who may decide (auth/policy.h): --approvers, --policy lines, the strictest
// rule over several actions, self-approval, and the error text people see.
#include <catch2/catch.hpp>

#include "smws/auth/policy.h"

using nlohmann::json;
using namespace smws::auth;
using smws::Status;

namespace {

Identity person(const std::string& name, std::vector<std::string> groups, const std::string& via = "users") {
  return Identity{name, std::move(groups), via, std::nullopt};
}

Policy with_rules(const std::string& text, std::vector<std::string> approvers = {}) {
  Policy p;
  REQUIRE(p.set_approvers(approvers).ok());
  std::vector<PolicyRule> rules;
  Status st = Policy::parse_rules(text, "policy.jsonl", &rules);
  INFO(st.message);
  REQUIRE(st.ok());
  p.set_rules(std::move(rules));
  p.set_roles_enabled(true);
  return p;
}

}  // namespace

TEST_CASE("glob: * matches any run, everything else literally", "[auth][policy]") {
  CHECK(glob_match("deploy*", "deploy"));
  CHECK(glob_match("deploy*", "deploy-prod"));
  CHECK_FALSE(glob_match("deploy*", "redeploy"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*prod*", "deploy-prod-eu"));
  CHECK(glob_match("a*b*c", "aXbYc"));
  CHECK_FALSE(glob_match("a*b*c", "aXbY"));
  CHECK_FALSE(glob_match("Deploy", "deploy"));
  CHECK(glob_match("db.?", "db.?"));
  CHECK_FALSE(glob_match("db.?", "db.x"));
}

TEST_CASE("roles off: everyone may decide anything", "[auth][policy]") {
  Policy p;
  CHECK(p.may_decide(Identity::anonymous(), {"deploy"}, "").allowed);
  CHECK(p.may_decide(Identity::shared_token(), {"deploy"}, "token").allowed);
}

TEST_CASE("the default approvers are the group approvers, others get SPEC's error", "[auth][policy]") {
  Policy p;
  p.set_roles_enabled(true);
  CHECK(p.approvers() == std::vector<std::string>{"approvers"});
  CHECK(p.may_decide(person("alice", {"approvers"}), {"deploy"}, "").allowed);
  DecideCheck c = p.may_decide(person("bob", {"viewers"}), {"deploy"}, "");
  CHECK_FALSE(c.allowed);
  CHECK(c.error == "not allowed: bob may not decide deploy (approvers: approvers)");
}

TEST_CASE("approvers by GROUP and by @NAME", "[auth][policy]") {
  Policy p;
  REQUIRE(p.set_approvers({"ops", "@bob"}).ok());
  p.set_roles_enabled(true);
  CHECK(p.may_decide(person("bob", {}), {"deploy"}, "").allowed);
  CHECK(p.may_decide(person("carol", {"ops"}), {"deploy"}, "").allowed);
  CHECK(p.may_decide(person("alice", {"dev"}), {"deploy"}, "").error ==
        "not allowed: alice may not decide deploy (approvers: ops, @bob)");
  // A group called "bob" is not the person bob.
  CHECK_FALSE(p.may_decide(person("zed", {"bob"}), {"deploy"}, "").allowed);
  CHECK(p.set_approvers({"ops,dev"}).code == Status::kUsage);
  CHECK(p.set_approvers({"@"}).code == Status::kUsage);
  CHECK(p.set_approvers({"@@x"}).code == Status::kUsage);
}

TEST_CASE("with roles on, an unverified identity only watches", "[auth][policy]") {
  Policy p;
  REQUIRE(p.set_approvers({"@token", "@anonymous"}).ok());
  p.set_roles_enabled(true);
  DecideCheck c = p.may_decide(Identity::shared_token(), {"deploy"}, "");
  CHECK_FALSE(c.allowed);
  CHECK(c.error == "not allowed: token may not decide deploy (approvers: @token, @anonymous; token is not a verified identity)");
  CHECK_FALSE(p.may_decide(Identity::anonymous(), {"deploy"}, "").allowed);
}

TEST_CASE("policy file: the first matching line is the action's policy", "[auth][policy]") {
  Policy p = with_rules("# deploys need two from ops\n"
                        "{\"action\":\"deploy-prod*\",\"approvers\":[\"ops\",\"@alice\"],\"required\":2,\"self_approval\":false}\n"
                        "{\"action\":\"deploy*\",\"approvers\":[\"dev\"]}\n"
                        "\n"
                        "{\"action\":\"restart\",\"required\":3}\n");
  EffectivePolicy e = p.effective({"deploy-prod-eu"});
  CHECK(e.approvers == std::vector<std::vector<std::string>>{{"ops", "@alice"}});
  CHECK(e.required == 2);
  CHECK_FALSE(e.self_approval);
  e = p.effective({"deploy-staging"});
  CHECK(e.approvers == std::vector<std::vector<std::string>>{{"dev"}});
  CHECK(e.required == 1);
  CHECK(e.self_approval);
  e = p.effective({"restart"});  // no approvers in the line: --approvers
  CHECK(e.approvers == std::vector<std::vector<std::string>>{{"approvers"}});
  CHECK(e.required == 3);
  e = p.effective({"something-else"});
  CHECK(e.approvers == std::vector<std::vector<std::string>>{{"approvers"}});
  CHECK(e.required == 1);
  CHECK(p.may_decide(person("alice", {}), {"deploy-prod-eu"}, "").allowed);
  CHECK(p.may_decide(person("dan", {"dev"}), {"deploy-staging"}, "").allowed);
  CHECK(p.may_decide(person("dan", {"dev"}), {"deploy-prod-eu"}, "").error ==
        "not allowed: dan may not decide deploy-prod-eu (approvers: ops, @alice)");
}

TEST_CASE("several actions: each action's policy must allow, and required is the largest", "[auth][policy]") {
  Policy p = with_rules("{\"action\":\"deploy\",\"approvers\":[\"ops\"],\"required\":2}\n"
                        "{\"action\":\"notify\",\"approvers\":[\"ops\",\"dev\"],\"self_approval\":false}\n");
  EffectivePolicy e = p.effective({"notify", "deploy"});
  CHECK(e.required == 2);
  CHECK_FALSE(e.self_approval);
  CHECK(p.may_decide(person("olga", {"ops"}), {"notify", "deploy"}, "").allowed);
  CHECK(p.may_decide(person("dan", {"dev"}), {"notify", "deploy"}, "").error ==
        "not allowed: dan may not decide deploy (approvers: ops)");
  json j = p.policy_json({"notify", "deploy"});
  CHECK(j == json::parse(R"({"approvers":["ops","dev"],"required":2,"self_approval":false,
                             "all_of":[["ops","dev"],["ops"]]})"));
  CHECK(p.policy_json({"deploy"}) == json::parse(R"({"approvers":["ops"],"required":2})"));
  CHECK(p.policy_json({}) == json::parse(R"({"approvers":["approvers"],"required":1})"));
}

TEST_CASE("self_approval false: the requester may not approve or edit, but may reject", "[auth][policy]") {
  Policy p = with_rules("{\"action\":\"deploy\",\"approvers\":[\"ops\"],\"self_approval\":false}\n");
  Identity olga = person("olga", {"ops"});
  CHECK(p.may_decide(olga, {"deploy"}, "olga", "approve").error ==
        "not allowed: olga may not approve deploy: they asked for it (self_approval is false)");
  CHECK_FALSE(p.may_decide(olga, {"deploy"}, "olga", "edit").allowed);
  CHECK(p.may_decide(olga, {"deploy"}, "olga", "reject").allowed);
  CHECK(p.may_decide(olga, {"deploy"}, "olga", "respond").allowed);
  CHECK(p.may_decide(olga, {"deploy"}, "pete", "approve").allowed);
  CHECK(p.may_decide(olga, {"deploy"}, "", "approve").allowed);  // no sender: no requester
  // Where self-approval is allowed (the default), asking and approving is fine.
  Policy open = with_rules("{\"action\":\"deploy\",\"approvers\":[\"ops\"]}\n");
  CHECK(open.may_decide(olga, {"deploy"}, "olga").allowed);
}

TEST_CASE("every bad policy line is named and the file refused", "[auth][policy]") {
  std::vector<PolicyRule> rules;
  Status st = Policy::parse_rules("{\"action\":\"ok\"}\n"
                                  "not json\n"
                                  "[1]\n"
                                  "{\"approvers\":[\"ops\"]}\n"
                                  "{\"action\":\"x\",\"requried\":2}\n"
                                  "{\"action\":\"x\",\"required\":0}\n"
                                  "{\"action\":\"x\",\"required\":1.5}\n"
                                  "{\"action\":\"x\",\"approvers\":[]}\n"
                                  "{\"action\":\"x\",\"approvers\":\"ops\"}\n"
                                  "{\"action\":\"x\",\"approvers\":[\"a,b\"]}\n"
                                  "{\"action\":\"x\",\"self_approval\":\"no\"}\n",
                                  "p.jsonl", &rules);
  CHECK(st.code == Status::kBadInput);
  CHECK(st.message ==
        "p.jsonl:2: not JSON\n"
        "p.jsonl:3: not a JSON object\n"
        "p.jsonl:4: \"action\" must be a non-empty string (a glob: deploy*)\n"
        "p.jsonl:5: unknown key \"requried\" (action, approvers, required, self_approval)\n"
        "p.jsonl:6: \"required\" must be an integer from 1 to 100\n"
        "p.jsonl:7: \"required\" must be an integer from 1 to 100\n"
        "p.jsonl:8: \"approvers\" must be a non-empty list of GROUP or @NAME\n"
        "p.jsonl:9: \"approvers\" must be a non-empty list of GROUP or @NAME\n"
        "p.jsonl:10: approver \"a,b\" must be one GROUP or @NAME\n"
        "p.jsonl:11: \"self_approval\" must be true or false");
  CHECK(rules.empty());
  CHECK(Policy::load_rules("/nonexistent/policy", &rules).code == Status::kNotFound);
}

TEST_CASE("action_names reads action_requests in order", "[auth][policy]") {
  json i = json::parse(R"({"type":"interrupt","action_requests":[{"name":"deploy"},{"args":{}},{"name":"notify"}]})");
  CHECK(action_names(i) == std::vector<std::string>{"deploy", "notify"});
  CHECK(action_names(json::parse(R"({"type":"interrupt"})")).empty());
}
