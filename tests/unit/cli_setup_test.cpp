// SPDX-License-Identifier: Apache-2.0
// Each tool's flags, parsed through its own setup_<tool>() without starting a
// process (STYLE habit 1). What a flag does is the integration tests' job;
// these pin what an argv turns into and which argvs are usage errors (64).
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hitl_approve.h"
#include "sm_listen.h"
#include "sm_send.h"
#include "smws/cli.h"
#include "smws/exit_code.h"
#include "ws_probe.h"
#include "ws_relay.h"

namespace {

// Parses args (without the program name) through setup into options, the
// way main() does. nullopt: the tool would go on to run; else its exit code.
template <class Options, class Setup>
std::optional<int> parse(CLI::App& app, Setup setup, Options& options, std::vector<std::string> args) {
  setup(app, options);
  const char* tool = app.get_name().c_str();
  std::vector<const char*> argv{tool};
  for (const auto& arg : args) argv.push_back(arg.c_str());
  return smws::parse_flags(app, static_cast<int>(argv.size()), argv.data());
}

template <class Options, class Setup>
std::optional<int> parse(const char* tool, Setup setup, Options& options, std::vector<std::string> args) {
  CLI::App app{"unit test", tool};
  return parse(app, setup, options, std::move(args));
}

std::optional<int> sm_send(smws::SmSendOptions& o, std::vector<std::string> args) {
  return parse("sm-send", smws::setup_sm_send, o, std::move(args));
}
std::optional<int> sm_listen(smws::SmListenOptions& o, std::vector<std::string> args) {
  return parse("sm-listen", smws::setup_sm_listen, o, std::move(args));
}
std::optional<int> ws_relay(smws::RelayOptions& o, std::vector<std::string> args) {
  return parse("ws-relay", smws::setup_ws_relay, o, std::move(args));
}
// ProbeOptions::duration_option points into the App: the caller keeps it.
std::optional<int> probe(CLI::App& app, ws_probe::ProbeOptions& o, std::vector<std::string> args) {
  return parse(app, ws_probe::setup_ws_probe, o, std::move(args));
}
std::optional<int> probe(ws_probe::ProbeOptions& o, std::vector<std::string> args) {
  return parse("ws-probe", ws_probe::setup_ws_probe, o, std::move(args));
}
std::optional<int> hitl_approve(smws::HitlApproveOptions& o, std::vector<std::string> args) {
  return parse("hitl-approve", smws::setup_hitl_approve, o, std::move(args));
}

}  // namespace

TEST_CASE("sm-send takes TYPE, FIELDs and the event's fields as flags", "[cli][sm-send]") {
  smws::SmSendOptions o;
  REQUIRE_FALSE(sm_send(o, {"-m", "m1", "--state", "running", "--previous", "idle", "deploy", "env=prod",
                            "n:=3", "--socket", "/run/x.sock", "--strict", "--wait-reply", "1.5"}));
  CHECK(o.type == "deploy");
  CHECK(o.type_given);
  CHECK(o.fields == std::vector<std::string>{"env=prod", "n:=3"});
  CHECK(o.machine_id == std::optional<std::string>("m1"));
  CHECK(o.state == std::optional<std::string>("running"));
  CHECK(o.previous_state == std::optional<std::string>("idle"));
  CHECK(o.socket == "/run/x.sock");
  CHECK(o.strict);
  CHECK(o.wait_reply == 1.5);
  CHECK_FALSE(o.json);
}

TEST_CASE("sm-send without --wait-reply leaves it negative and an empty TYPE still counts as given",
          "[cli][sm-send]") {
  smws::SmSendOptions o;
  REQUIRE_FALSE(sm_send(o, {""}));
  CHECK(o.type_given);
  CHECK(o.wait_reply < 0);
  smws::SmSendOptions json_only;
  REQUIRE_FALSE(sm_send(json_only, {"--json", R"({"type":"t"})"}));
  CHECK_FALSE(json_only.type_given);
  CHECK(json_only.json == std::optional<std::string>(R"({"type":"t"})"));
}

TEST_CASE("sm-send refuses a zero --max-size, a negative --wait-reply and unknown flags with 64",
          "[cli][sm-send]") {
  smws::SmSendOptions a, b, c;
  CHECK(sm_send(a, {"--max-size", "0", "t"}) == smws::kExitUsage);
  CHECK(sm_send(b, {"--wait-reply", "-1", "t"}) == smws::kExitUsage);
  CHECK(sm_send(c, {"--no-such-flag", "t"}) == smws::kExitUsage);
}

TEST_CASE("sm-listen takes one TYPE per --type, a count and an idle timeout", "[cli][sm-listen]") {
  smws::SmListenOptions o;
  REQUIRE_FALSE(sm_listen(o, {"--type", "a", "--type", "b", "--count", "3", "--idle-timeout", "0.5",
                              "--mode", "0600", "--socket", "/run/y.sock", "-vv"}));
  CHECK(o.types == std::vector<std::string>{"a", "b"});
  CHECK(o.count == 3);
  CHECK(o.idle_timeout == 0.5);
  CHECK(o.mode == "0600");
  CHECK(o.socket == "/run/y.sock");
  CHECK(o.common.verbosity() == 2);
}

TEST_CASE("sm-listen refuses --count 0 and a stray positional argument with 64", "[cli][sm-listen]") {
  smws::SmListenOptions a, b;
  CHECK(sm_listen(a, {"--count", "0"}) == smws::kExitUsage);
  CHECK(sm_listen(b, {"--type", "a", "b"}) == smws::kExitUsage);
}

TEST_CASE("ws-relay keeps its defaults and takes repeated --allow-origin", "[cli][ws-relay]") {
  smws::RelayOptions defaults;
  REQUIRE_FALSE(ws_relay(defaults, {}));
  CHECK(defaults.listen == "127.0.0.1:3002");
  CHECK(defaults.path == "/ws/events");
  CHECK(defaults.slow_client == "disconnect");
  CHECK(defaults.ping_timeout < 0);

  smws::RelayOptions o;
  REQUIRE_FALSE(ws_relay(o, {"--listen", "127.0.0.1:0", "--slow-client", "drop", "--allow-origin", "a",
                             "--allow-origin", "*", "--history", "5", "--seq", "--ping-interval", "0",
                             "--exit-on-eof", "--hitl-timeout", "2.5", "-q"}));
  CHECK(o.listen == "127.0.0.1:0");
  CHECK(o.slow_client == "drop");
  CHECK(o.allow_origin == std::vector<std::string>{"a", "*"});
  CHECK(o.history == 5);
  CHECK(o.seq);
  CHECK(o.ping_interval == 0);
  CHECK(o.exit_on_eof);
  CHECK(o.hitl_timeout == 2.5);
  CHECK(o.common.verbosity() == -1);
}

TEST_CASE("ws-relay refuses an unknown --slow-client policy and --max-queue 0 with 64", "[cli][ws-relay]") {
  smws::RelayOptions a, b;
  CHECK(ws_relay(a, {"--slow-client", "maybe"}) == smws::kExitUsage);
  CHECK(ws_relay(b, {"--max-queue", "0"}) == smws::kExitUsage);
}

TEST_CASE("ws-probe needs a URL and tells a given --duration from the default", "[cli][ws-probe]") {
  ws_probe::ProbeOptions none;
  CHECK(probe(none, {}) == smws::kExitUsage);

  CLI::App plain_app{"unit test", "ws-probe"};
  ws_probe::ProbeOptions plain;
  REQUIRE_FALSE(probe(plain_app, plain, {"ws://127.0.0.1:1/"}));
  REQUIRE(plain.duration_option != nullptr);
  CHECK(plain.duration_option->count() == 0);

  CLI::App app{"unit test", "ws-probe"};
  ws_probe::ProbeOptions o;
  REQUIRE_FALSE(probe(app, o, {"wss://h/p", "--duration", "2", "-H", "A: b", "-H", "C: d", "--send", "x",
                          "--connections", "3", "--json", "--insecure"}));
  CHECK(o.url == "wss://h/p");
  CHECK(o.duration == 2);
  CHECK(o.duration_option->count() == 1);
  CHECK(o.headers == std::vector<std::string>{"A: b", "C: d"});
  CHECK(o.send == std::vector<std::string>{"x"});
  CHECK(o.connections == 3);
  CHECK(o.json);
  CHECK(o.insecure);
}

TEST_CASE("ws-probe refuses --connections 0 and a negative --ping with 64", "[cli][ws-probe]") {
  ws_probe::ProbeOptions a, b;
  CHECK(probe(a, {"ws://h/", "--connections", "0"}) == smws::kExitUsage);
  CHECK(probe(b, {"ws://h/", "--ping", "-2"}) == smws::kExitUsage);
}

TEST_CASE("hitl-approve takes --auto with repeated --match and a decisions file", "[cli][hitl-approve]") {
  smws::HitlApproveOptions o;
  REQUIRE_FALSE(hitl_approve(o, {"ws://127.0.0.1:3002/ws/events", "--auto", "approve", "--match", "deploy*",
                                 "--match", "read_*", "--as", "ci", "--once", "--decisions", "-",
                                 "--no-reconnect", "--connect-timeout", "3"}));
  CHECK(o.url == "ws://127.0.0.1:3002/ws/events");
  CHECK(o.auto_decision == "approve");
  CHECK(o.match == std::vector<std::string>{"deploy*", "read_*"});
  CHECK(o.as == "ci");
  CHECK(o.once);
  CHECK(o.decisions == "-");
  CHECK(o.no_reconnect);
  CHECK(o.connect_timeout == 3);
  CHECK_FALSE(o.list);
}

TEST_CASE("hitl-approve refuses a missing URL and an --auto other than approve or reject with 64",
          "[cli][hitl-approve]") {
  smws::HitlApproveOptions a, b;
  CHECK(hitl_approve(a, {"--list"}) == smws::kExitUsage);
  CHECK(hitl_approve(b, {"ws://h/", "--auto", "edit"}) == smws::kExitUsage);
}

TEST_CASE("sm-send --version ends the parse with 0, before any check of TYPE", "[cli]") {
  smws::SmSendOptions o;
  CHECK(sm_send(o, {"--version"}) == smws::kExitOk);
}
