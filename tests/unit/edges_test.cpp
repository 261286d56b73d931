// SPDX-License-Identifier: Apache-2.0
// The server's rules against hostile input at its edges, without sockets
// (SPEC "Hostile input at the edges"): the Host rule, tokens presented as a
// subprotocol, the per-address admission limit, queues bounded by bytes,
// the open-file budget, and what an unfinished fragmented message may hold.
#include <catch2/catch.hpp>

#include <string>

#include "smws/net/handshake.h"
#include "smws/net/send_queue.h"
#include "smws/net/upgrade_admission.h"
#include "smws/relay/fd_budget.h"
#include "smws/relay/refusal_advice.h"
#include "smws/ws_frame.h"

using namespace smws;
using namespace smws::net;

namespace {

HttpRequest parse(const std::string& head) {
  std::string error;
  auto r = parse_request_head(head, &error);
  REQUIRE(r);
  return *r;
}

HttpRequest with_host(const std::string& host) {
  return parse("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n");
}

const char* kUpgrade =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:3002\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

HttpRequest upgrade(const std::string& extra = "") { return parse(kUpgrade + extra + "\r\n"); }

std::string header(const HttpReply& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

}  // namespace

// Pins issue 20's DNS rebinding: with Host and Origin both
// attacker.example:PORT, the same-host Origin rule let the page in.
TEST_CASE("on a loopback listener only the loopback names and --allow-host pass the Host rule",
          "[edges][host]") {
  HostRule rule;
  rule.loopback = true;
  for (const char* ok : {"localhost", "localhost:3002", "127.0.0.1", "127.0.0.1:1", "[::1]",
                         "[::1]:3002", "LOCALHOST:3002", "localhost.:3002"}) {
    INFO(ok);
    CHECK(host_allowed(with_host(ok), rule));
  }
  for (const char* bad : {"attacker.example:3002", "attacker.example", "127.0.0.2:3002",
                          "localhost.attacker.example", "[::2]:3002", "0.0.0.0:3002"}) {
    INFO(bad);
    CHECK_FALSE(host_allowed(with_host(bad), rule));
  }
  std::optional<HttpReply> r = host_refusal(with_host("attacker.example:3002"), rule);
  REQUIRE(r);
  CHECK(r->status == 421);
  CHECK(r->body.find("'attacker.example'") != std::string::npos);
  CHECK(r->body.find("localhost, 127.0.0.1, [::1]") != std::string::npos);

  rule.allow_hosts = {normalize_host_name("Relay.Example."), normalize_host_name("::2")};
  CHECK(host_allowed(with_host("relay.example:8443"), rule));
  CHECK(host_allowed(with_host("[::2]:3002"), rule));
  CHECK(host_allowed(with_host("localhost:3002"), rule));  // added to, not replaced
  CHECK_FALSE(host_allowed(with_host("other.example"), rule));
  // A request without Host (HTTP/1.0, a tool) is not a browser's.
  CHECK(host_allowed(parse("GET / HTTP/1.0\r\n\r\n"), rule));
}

TEST_CASE("elsewhere any Host passes, unless --allow-host narrows the names", "[edges][host]") {
  HostRule rule;  // e.g. --listen 0.0.0.0:3002
  CHECK(host_allowed(with_host("anything.example"), rule));
  rule.allow_hosts = {"relay.example"};
  CHECK(host_allowed(with_host("relay.example:3002"), rule));
  CHECK_FALSE(host_allowed(with_host("localhost:3002"), rule));
  CHECK_FALSE(host_allowed(with_host("10.0.0.5:3002"), rule));
  CHECK(host_refusal(with_host("10.0.0.5"), rule)->body.find("answers to: relay.example") !=
        std::string::npos);
}

TEST_CASE("loopback listen addresses", "[edges][host]") {
  for (const char* yes : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LocalHost"}) {
    INFO(yes);
    CHECK(is_loopback_address(yes));
  }
  for (const char* no : {"0.0.0.0", "", "::", "10.0.0.1", "128.0.0.1", "relay.example"}) {
    INFO(no);
    CHECK_FALSE(is_loopback_address(no));
  }
}

TEST_CASE("a token offered as the subprotocol smws.bearer.T is presented, never selected",
          "[edges][token]") {
  HttpRequest r = upgrade("Sec-WebSocket-Protocol: smws.v1, smws.bearer.s3cret\r\n");
  CHECK(offers_subprotocol(r, "smws.v1"));
  CHECK(selected_subprotocol(r) == "smws.v1");
  CHECK(request_token(r) == std::optional<std::string>("s3cret"));
  CHECK(token_ok(r, "s3cret"));
  CHECK_FALSE(token_ok(r, "s3cre"));
  std::string reply = switching_protocols_response("dGhlIHNhbXBsZSBub25jZQ==", selected_subprotocol(r));
  CHECK(reply.find("Sec-WebSocket-Protocol: smws.v1\r\n") != std::string::npos);
  CHECK(reply.find("s3cret") == std::string::npos);

  // Without smws.v1 offered, none is selected (the 101 names none, as before).
  HttpRequest other = upgrade("Sec-WebSocket-Protocol: chat\r\n");
  CHECK(selected_subprotocol(other).empty());
  CHECK(switching_protocols_response("dGhlIHNhbXBsZSBub25jZQ==", "").find("Sec-WebSocket-Protocol") ==
        std::string::npos);
  CHECK_FALSE(request_token(other));

  // The Authorization header comes first, then the subprotocol, then ?token=.
  HttpRequest all = parse(
      "GET /ws?token=q HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer h\r\n"
      "Sec-WebSocket-Protocol: smws.bearer.p, smws.v1\r\n\r\n");
  CHECK(presented_tokens(all) == std::vector<std::string>{"h", "p", "q"});
  CHECK(token_ok(all, "p"));
  CHECK(token_ok(all, "q"));

  AdmissionRules rules;
  rules.max_clients = 10;
  rules.token = "s3cret";
  CHECK(admit_upgrade(r, rules, 0, false).verdict == Admission::Verdict::kAccept);
  Admission wrong = admit_upgrade(upgrade("Sec-WebSocket-Protocol: smws.v1, smws.bearer.nope\r\n"),
                                  rules, 0, false);
  CHECK(wrong.reply.status == 401);
  CHECK(wrong.token_sent);
}

TEST_CASE("an address with max_clients_per_address open gets 503 with Retry-After",
          "[edges][admission]") {
  AdmissionRules rules;
  rules.max_clients = 100;
  rules.max_clients_per_address = 3;
  CHECK(admit_upgrade(upgrade(), rules, 50, false, 2).verdict == Admission::Verdict::kAccept);
  Admission a = admit_upgrade(upgrade(), rules, 50, false, 3);
  CHECK(a.verdict == Admission::Verdict::kRefuse);
  CHECK(a.reply.status == 503);
  CHECK(a.reason == RefusalReason::kMaxClientsPerAddress);
  CHECK(header(a.reply, "Retry-After") == "5");
  CHECK(std::string(refusal_reason_name(a.reason)) == "max_clients_per_ip");
  rules.max_clients_per_address = 0;  // no limit
  CHECK(admit_upgrade(upgrade(), rules, 50, false, 1000).verdict == Admission::Verdict::kAccept);
  HttpReply h = handshakes_per_address_refusal();
  CHECK(h.status == 503);
  CHECK(header(h, "Retry-After") == "5");
}

TEST_CASE("a queue counts the bytes of its data messages", "[edges][send_queue]") {
  SendQueue q;
  q.push(make_frame(std::string(100, 'a')), EntryKind::kData);
  q.push(make_frame("ping"), EntryKind::kControl);
  q.push(make_frame(std::string(50, 'b')), EntryKind::kData);
  CHECK(q.data_bytes() == 150);
  q.advance_front(10);
  CHECK(q.data_bytes() == 150);  // a partly written frame counts whole until written
  q.pop_front();
  CHECK(q.data_bytes() == 50);
  q.discard_unstarted();
  CHECK(q.data_bytes() == 0);
  q.push(make_frame("x"), EntryKind::kData);
  q.clear();
  CHECK(q.data_bytes() == 0);
}

TEST_CASE("under drop, a large message makes room by bytes, every drop counted",
          "[edges][send_queue]") {
  SendQueue q;
  for (int i = 0; i < 5; ++i) q.push(make_frame(std::string(100, 'a')), EntryKind::kData);
  // 500 bytes queued, bound 300: room is made until fewer than 300 remain.
  uint64_t dropped = q.drop_oldest_and_push(make_frame(std::string(100, 'n')), 300);
  CHECK(dropped == 3);
  CHECK(q.data_queued() == 3);
  CHECK(q.data_bytes() == 300);
  DropNotice notice = [](uint64_t n) { return "dropped " + std::to_string(n); };
  q.materialize(q.front(), notice);
  CHECK(q.front().kind == EntryKind::kDropNotice);
  CHECK(q.front().dropped == 3);
  // The default bound drops one, as before bytes were counted.
  CHECK(q.drop_oldest_and_push(make_frame("m")) == 1);
  CHECK(q.front().dropped == 4);
}

TEST_CASE("the open-file budget names the numbers and the fix when clients do not fit",
          "[edges][fd]") {
  relay::FdLimit limit;
  limit.soft = limit.hard = 1024;
  Status s = relay::check_fd_budget(limit, 10000, 1024, 64);
  CHECK(s.code == Status::kUsage);
  CHECK(s.message.find("--max-clients 10000 needs 11088 open files") != std::string::npos);
  CHECK(s.message.find("limit is 1024 (hard limit 1024)") != std::string::npos);
  CHECK(s.message.find("LimitNOFILE=65536") != std::string::npos);
  CHECK(s.message.find("lower --max-clients") == std::string::npos);  // nothing would fit
  limit.soft = limit.hard = 2000;
  s = relay::check_fd_budget(limit, 10000, 1024, 64);
  CHECK(s.message.find("or lower --max-clients to 912") != std::string::npos);
  CHECK(relay::check_fd_budget(limit, 912, 1024, 64).ok());
  // The process's own limits, raised: the soft limit is the hard one now.
  relay::FdLimit now = relay::raise_fd_limit();
  CHECK(now.soft <= now.hard);
  if (now.error == 0) CHECK(now.soft == now.hard);
}

TEST_CASE("a fragmented message over max_message is refused with 1009 as its fragment arrives",
          "[edges][ws_frame]") {
  ws::FrameReader reader(ws::Role::kServer, 1000);
  uint8_t key[4] = {1, 2, 3, 4};
  std::string part(400, 'x');
  reader.feed(ws::encode_frame(ws::Opcode::kText, part, false, key));
  reader.feed(ws::encode_frame(ws::Opcode::kContinuation, part, false, key));
  ws::Message m;
  CHECK(reader.next(&m) == ws::FrameReader::Status::kNeedMore);
  // The third fragment's header says 1,200 bytes: refused before its payload.
  reader.feed(ws::encode_frame(ws::Opcode::kContinuation, part, false, key).substr(0, 6));
  CHECK(reader.next(&m) == ws::FrameReader::Status::kError);
  CHECK(reader.error_code() == 1009);
}

TEST_CASE("the new refusals each say what to do", "[edges][relay]") {
  relay::RelayOptions o;
  o.max_clients_per_ip = 3;
  HttpRequest req = with_host("Attacker.Example:3002");
  RefusedUpgrade r;
  r.peer = "127.0.0.1:5555";
  r.request = &req;
  r.reason = RefusalReason::kHost;
  r.status = 421;
  CHECK(relay::refusal_line(r, o, 0) ==
        "refused a request from 127.0.0.1:5555: 421 Host 'attacker.example' is not a name of this relay "
        "(a page of another site re-bound to this address? DNS rebinding); to serve it: "
        "--allow-host attacker.example");
  r.reason = RefusalReason::kMaxClientsPerAddress;
  r.status = 503;
  CHECK_THAT(relay::refusal_line(r, o, 2),
             Catch::Contains("refused a WebSocket from 127.0.0.1:5555: 503 3 clients are connected from this "
                             "address; to allow more: --max-clients-per-ip N (2 more refused"));
  r.request = nullptr;
  r.reason = RefusalReason::kHandshakesPerAddress;
  CHECK_THAT(relay::refusal_line(r, o, 0),
             Catch::StartsWith("refused a connection from 127.0.0.1:5555: 503 too many connections from this "
                               "address are in their handshake (64 at most"));
}
