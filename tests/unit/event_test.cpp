// SPDX-License-Identifier: Apache-2.0
// Events: shape check without a DOM, the HTTPie field grammar, and splicing
// members into forwarded bytes.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "smws/event.h"

using smws::event::BuildSpec;
using smws::event::Field;
using smws::event::Members;
using smws::event::Scan;
using Json = nlohmann::json;

namespace {

Scan scanned(std::string_view bytes) {
  Scan s;
  smws::event::scan(bytes, &s);
  return s;
}

std::string built(BuildSpec spec) {
  std::string out, error;
  REQUIRE(smws::event::build(spec, &out, &error));
  return out;
}

std::string build_error(BuildSpec spec) {
  std::string out, error;
  REQUIRE_FALSE(smws::event::build(spec, &out, &error));
  return error;
}

}  // namespace

TEST_CASE("an object with a non-empty string type is an event", "[event]") {
  auto s = scanned(R"({"type":"state_change","machine_id":"w1","data":{"type":7}})");
  CHECK(s.valid);
  CHECK(s.type == "state_change");
  CHECK_FALSE(s.has_timestamp);
  CHECK_FALSE(s.has_reply_to);
}

TEST_CASE("scan notes a top-level timestamp and reply_to but not nested ones", "[event]") {
  auto s = scanned(R"({"data":{"timestamp":1,"reply_to":"x"},"type":"t"})");
  CHECK(s.valid);
  CHECK_FALSE(s.has_timestamp);
  CHECK_FALSE(s.has_reply_to);
  s = scanned(R"({"type":"t","timestamp":1.5,"reply_to":"/tmp/r.sock"})");
  CHECK(s.has_timestamp);
  CHECK(s.has_reply_to);
}

TEST_CASE("a type only nested deeper does not count", "[event]") {
  auto s = scanned(R"({"data":{"type":"x"},"list":[{"type":"y"}]})");
  CHECK_FALSE(s.valid);
  CHECK(s.error == "no \"type\" member");
}

TEST_CASE("each kind of non-event is refused with its reason", "[event]") {
  CHECK(scanned("not json").error.rfind("not JSON: ", 0) == 0);
  CHECK(scanned("[1,2]").error == "not a JSON object");
  CHECK(scanned("\"type\"").error == "not a JSON object");
  CHECK(scanned("42").error == "not a JSON object");
  CHECK(scanned("{}").error == "no \"type\" member");
  CHECK(scanned(R"({"type":""})").error == "\"type\" is empty");
  CHECK(scanned(R"({"type":5})").error == "\"type\" is not a string");
  CHECK(scanned(R"({"type":{"a":1}})").error == "\"type\" is not a string");
  CHECK(scanned(R"({"type":null})").error == "\"type\" is not a string");
  CHECK(scanned("{\"type\":\"a\xff\"}").error == "not UTF-8");
  CHECK(scanned(R"({"type":"a"} {"type":"b"})").error.rfind("not JSON", 0) == 0);
  CHECK(scanned(R"({"type":"a"})" "x").error.rfind("not JSON", 0) == 0);
  CHECK(scanned(R"({"type":"a")").error.rfind("not JSON", 0) == 0);
  CHECK(scanned("").error.rfind("not JSON", 0) == 0);
}

TEST_CASE("the last type member wins, as in a DOM", "[event]") {
  CHECK(scanned(R"({"type":"a","type":"b"})").type == "b");
  CHECK_FALSE(scanned(R"({"type":"a","type":3})").valid);
}

TEST_CASE("surrounding whitespace is allowed and trim removes it", "[event]") {
  CHECK(scanned(" \t{\"type\":\"a\"}\r\n").valid);
  CHECK(smws::event::trim(" \t{\"type\":\"a\"}\r\n") == "{\"type\":\"a\"}");
  CHECK(smws::event::trim("  ").empty());
}

TEST_CASE("a member is spliced before the closing brace, the rest byte-identical", "[event]") {
  std::string out;
  smws::event::append_with_field(&out, R"({"type":"a", "x" : [1, 2]})", "timestamp", "12.5");
  CHECK(out == R"({"type":"a", "x" : [1, 2],"timestamp":12.5})");
  CHECK(scanned(out).has_timestamp);
}

TEST_CASE("now_timestamp is seconds with microseconds", "[event]") {
  auto t = smws::event::now_timestamp();
  auto j = Json::parse(t);
  CHECK(j.is_number_float());
  CHECK(j.get<double>() > 1.6e9);
  CHECK(t.size() - t.find('.') == 7);
}

TEST_CASE("append_single_line drops raw newlines only", "[event]") {
  std::string out;
  smws::event::append_single_line(&out, "{\n  \"type\": \"a\",\r\n  \"s\": \"x\\ny\"\n}\n");
  CHECK(out == "{  \"type\": \"a\",  \"s\": \"x\\ny\"}");
  CHECK(Json::parse(out)["s"] == "x\ny");
}

TEST_CASE("set_member replaces an existing member", "[event]") {
  std::string e = R"({"type":"a","reply_to":"/old"})", error;
  REQUIRE(smws::event::set_member(&e, "reply_to", "\"/new\"", &error));
  CHECK(Json::parse(e)["reply_to"] == "/new");
  std::string bad = "[1]";
  CHECK_FALSE(smws::event::set_member(&bad, "k", "1", &error));
}

TEST_CASE("json_quote escapes as JSON requires", "[event]") {
  CHECK(smws::event::json_quote("a\"b\\c\n") == R"("a\"b\\c\n")");
}

TEST_CASE("field grammar: every form", "[event][field]") {
  Field f;
  std::string error;
  REQUIRE(smws::event::parse_field("job_id=42", &f, &error));
  CHECK((!f.top_level && !f.raw_json && f.key == "job_id" && f.value == "42"));
  REQUIRE(smws::event::parse_field("progress:=50", &f, &error));
  CHECK((!f.top_level && f.raw_json && f.key == "progress" && f.value == "50"));
  REQUIRE(smws::event::parse_field("@source=cron", &f, &error));
  CHECK((f.top_level && !f.raw_json && f.key == "source" && f.value == "cron"));
  REQUIRE(smws::event::parse_field("@extra:={\"a\":[1]}", &f, &error));
  CHECK((f.top_level && f.raw_json && f.key == "extra" && f.value == "{\"a\":[1]}"));
}

TEST_CASE("field grammar: the first separator wins and values keep the rest", "[event][field]") {
  Field f;
  std::string error;
  REQUIRE(smws::event::parse_field("url=http://h/?a=b:=c", &f, &error));
  CHECK((f.key == "url" && !f.raw_json && f.value == "http://h/?a=b:=c"));
  REQUIRE(smws::event::parse_field("empty=", &f, &error));
  CHECK((f.key == "empty" && f.value.empty()));
  REQUIRE(smws::event::parse_field("time:12=x", &f, &error));
  CHECK(f.key == "time:12");
  REQUIRE(smws::event::parse_field(R"(a\=b=c)", &f, &error));
  CHECK((f.key == "a=b" && f.value == "c"));
  REQUIRE(smws::event::parse_field(R"(\@at=x)", &f, &error));
  CHECK((!f.top_level && f.key == "@at"));
}

TEST_CASE("field grammar: malformed fields are named", "[event][field]") {
  Field f;
  std::string error;
  CHECK_FALSE(smws::event::parse_field("novalue", &f, &error));
  CHECK(error.find("novalue") != std::string::npos);
  CHECK_FALSE(smws::event::parse_field("=x", &f, &error));
  CHECK(error.find("empty key") != std::string::npos);
  CHECK_FALSE(smws::event::parse_field("@:=1", &f, &error));
  CHECK_FALSE(smws::event::parse_field("n:=notjson", &f, &error));
  CHECK(error.find("not JSON") != std::string::npos);
  CHECK_FALSE(smws::event::parse_field("k=\xff", &f, &error));
}

TEST_CASE("build puts flags and fields where the SPEC says, in order", "[event][build]") {
  BuildSpec spec;
  spec.type = "state_change";
  spec.machine_id = "worker-1";
  spec.state = "processing";
  spec.previous_state = "idle";
  spec.fields = {"job_id=42", "progress:=50", "tags:=[\"a\"]", "@source=cron", "@prio:=3"};
  CHECK(built(spec) ==
        R"({"type":"state_change","machine_id":"worker-1","state":"processing",)"
        R"("previous_state":"idle","source":"cron","prio":3,)"
        R"("data":{"job_id":"42","progress":50,"tags":["a"]}})");
}

TEST_CASE("build: @data object merges with key=value fields, other @data is refused",
          "[event][build]") {
  BuildSpec spec;
  spec.type = "t";
  spec.fields = {"@data:={\"a\":1}", "b=2"};
  CHECK(Json::parse(built(spec))["data"] == Json::parse(R"({"a":1,"b":"2"})"));
  spec.fields = {"@data:=[1]", "b=2"};
  CHECK(build_error(spec).find("@data") != std::string::npos);
}

TEST_CASE("build: @type may replace the type but not empty it", "[event][build]") {
  BuildSpec spec;
  spec.type = "a";
  spec.fields = {"@type=b"};
  CHECK(Json::parse(built(spec))["type"] == "b");
  spec.fields = {"@type="};
  CHECK_FALSE(build_error(spec).empty());
  spec.type = "";
  spec.fields = {};
  CHECK_FALSE(build_error(spec).empty());
}

TEST_CASE("build: values are JSON-escaped", "[event][build]") {
  BuildSpec spec;
  spec.type = "t\"q";
  spec.fields = {"msg=line1\nline2 \"quoted\" ü"};
  auto out = built(spec);
  CHECK(out.find('\n') == std::string::npos);
  auto j = Json::parse(out);
  CHECK(j["type"] == "t\"q");
  CHECK(j["data"]["msg"] == "line1\nline2 \"quoted\" ü");
}

TEST_CASE("excerpt escapes control bytes and invalid UTF-8, keeps valid UTF-8", "[event]") {
  CHECK(smws::event::excerpt("a\x01\xff ü") == "a\\x01\\xff ü");
  CHECK(smws::event::excerpt(std::string(100, 'x'), 10) == std::string(10, 'x') + "…");
}

// The fast validator behind scan() must accept exactly what nlohmann's parser
// (scan_reference) accepts, and note the same type and members; the raw
// member spans it reports (Members, for ws-relay) must each parse to the
// DOM's value for that key. Seeds cover the grammar's corners; random
// mutations of them cover the rest.
TEST_CASE("scan agrees with the nlohmann reference on tricky and mutated inputs",
          "[event][differential]") {
  const std::vector<std::string> seeds = {
      R"({"type":"a"})",
      R"( {"type" : "state_change" , "machine_id":"w-1","data":{"type":1,"x":[1,2,{"y":null}]}} )",
      R"({"type":"a","timestamp":1795307997.070841,"reply_to":"/tmp/r.sock"})",
      R"({"seq":7,"type":"state_change","machine_id":"w\u002d1","state":{"s":[1,{}]},)"
      R"("previous_state":null,"timestamp":"t","data":[],"state":"b","data":{"k":"}"}})",
      R"({"type":"state_change","machine_id":"m","timestamp":-1.5e3,"data":{"seq":[]}})",
      // Long strings: the fast path reads them eight bytes at a time, so
      // mutations land at every offset within a word.
      "{\"type\":\"long string\",\"s\":\"0123456789abcdef\\\"ghij\\\\klmnop\\u00e9qr"
      "stuvwxyz\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 ABCDEFGHIJKLMNOPQRSTUVWXYZ\","
      "\"t\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
      R"({"a":[],"b":{},"c":[[]],"type":"t","d":[{}]})",
      R"({"type":"\u00e9\ud83d\ude00","k\"ey":"v\\\/\b\f\n\r\t"})",
      R"({"ty\u0070e":"escaped key"})",
      R"({"type":"x","n":[-0,0,1,-1.5,1e10,1E+2,2e-3,-0.0e0,12345678901234567890123]})",
      R"({"type":"x","big":1e400})",
      R"({"type":"x","tiny":1e-400})",
      R"({"type":"x","lone":"\ud800"})",
      R"({"type":"x","low":"\udc00"})",
      R"({"type":"x","pair":"\ud800\udc00"})",
      R"({"type":"x","bad":"\x"})",
      "{\"type\":\"caf\xc3\xa9\",\"z\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}",
      "{\"type\":\"\xed\xa0\x80\"}",
      "{\"type\":\"\xc0\xaf\"}",
      "{\"type\":\"\xf4\x90\x80\x80\"}",
      "{\"type\":\"a\tb\"}",
      R"({"type":true})",
      R"({"type":"a","type":"b"})",
      R"({"type":"a","type":null})",
      R"({"type":"","x":1})",
      R"({"type":"a",})",
      R"({"type":"a"}})",
      R"({"type":"a"} x)",
      R"([{"type":"a"}])",
      R"({"type":"a","n":01})",
      R"({"type":"a","n":1.})",
      R"({"type":"a","n":-})",
      R"({"type":"a","t":tru})",
      R"({"type":"a","o":{"k" "v"}})",
      std::string("{\"type\":\"a\",\"nul\":\"") + '\0' + "\"}",
      std::string(300, '[') + std::string(300, ']'),
      "{\"type\":\"deep\",\"d\":" + std::string(300, '[') + std::string(300, ']') + "}",
      "",
      "{",
      "}",
      "null",
  };
  const std::string alphabet = "{}[]\":,\\ -+.0123456789eEtrufalsn\x01\x7f\x80\xbf\xc3\xe2\xf0\xff";
  uint32_t state = 12345;
  auto rnd = [&state](uint32_t n) {
    state = state * 1664525u + 1013904223u;
    return (state >> 8) % n;
  };
  size_t cases = 0, valid = 0, settled = 0;
  auto check = [&](const std::string& input) {
    Scan fast, ref, with_members;
    Members members;
    smws::event::scan(input, &fast);
    smws::event::scan(input, &with_members, &members);
    smws::event::scan_reference(input, &ref);
    ++cases;
    INFO("input: " << smws::event::excerpt(input, 400));
    REQUIRE(fast.valid == ref.valid);
    REQUIRE(with_members.valid == ref.valid);
    if (fast.valid) {
      ++valid;
      REQUIRE(fast.type == ref.type);
      REQUIRE(fast.has_timestamp == ref.has_timestamp);
      REQUIRE(fast.has_reply_to == ref.has_reply_to);
      REQUIRE(with_members.type == ref.type);
      REQUIRE(with_members.has_timestamp == ref.has_timestamp);
      REQUIRE(with_members.has_reply_to == ref.has_reply_to);
    }
    if (!members.settled) {  // nothing else may be reported
      REQUIRE_FALSE(members.has_seq);
      REQUIRE_FALSE(members.plain);
      for (auto view : {members.machine_id, members.state, members.previous_state,
                        members.timestamp, members.data}) {
        REQUIRE(view.empty());
      }
      return;
    }
    REQUIRE(ref.valid);
    ++settled;
    const auto dom = Json::parse(input);
    REQUIRE(members.has_seq == dom.contains("seq"));
    for (auto [key, view] : {std::pair{"machine_id", members.machine_id},
                             {"state", members.state},
                             {"previous_state", members.previous_state},
                             {"timestamp", members.timestamp},
                             {"data", members.data}}) {
      INFO("member: " << key);
      REQUIRE(dom.contains(key) == !view.empty());
      // A view into the input, holding exactly one JSON value: the DOM's.
      if (!view.empty()) {
        REQUIRE(view.data() >= input.data());
        REQUIRE(view.data() + view.size() <= input.data() + input.size());
        REQUIRE(Json::parse(view) == dom[key]);
      }
    }
  };
  for (const auto& seed : seeds) {
    check(seed);
    for (int m = 0; m < 1500; ++m) {
      std::string s = seed;
      int edits = 1 + static_cast<int>(rnd(3));
      for (int k = 0; k < edits; ++k) {
        uint32_t pos = s.empty() ? 0 : rnd(static_cast<uint32_t>(s.size()));
        switch (rnd(4)) {
          case 0: if (!s.empty()) s[pos] = alphabet[rnd(static_cast<uint32_t>(alphabet.size()))]; break;
          case 1: s.insert(s.begin() + pos, alphabet[rnd(static_cast<uint32_t>(alphabet.size()))]); break;
          case 2: if (!s.empty()) s.erase(pos, 1); break;
          case 3: s = s.substr(0, pos); break;
        }
      }
      check(s);
    }
  }
  CHECK(cases > 50000);
  CHECK(valid > 1000);  // the mutations keep enough valid events to compare
  CHECK(settled > 1000);  // ... and enough settled by the fast pass to check members
}
