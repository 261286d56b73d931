// SPDX-License-Identifier: Apache-2.0
// relay::refusal_line: what the operator reads when ws-relay refuses a client.
#include <catch2/catch.hpp>

#include "smws/relay/refusal_advice.h"

using smws::net::HttpRequest;
using smws::net::RefusalReason;
using smws::net::RefusedUpgrade;
using smws::relay::RelayOptions;
using smws::relay::printable;
using smws::relay::refusal_line;

namespace {

RefusedUpgrade refused(const HttpRequest* request, RefusalReason reason, int status) {
  RefusedUpgrade r;
  r.peer = "127.0.0.1:5555";
  r.request = request;
  r.reason = reason;
  r.status = status;
  return r;
}

}  // namespace

TEST_CASE("a refused origin names the flag that allows it and keeps the relay's own page", "[relay]") {
  HttpRequest req;
  req.headers = {{"origin", "http://app.example:8080"}, {"host", "127.0.0.1:3002"}};
  RelayOptions o;
  std::string line = refusal_line(refused(&req, RefusalReason::kOrigin, 403), o, 0);
  CHECK(line ==
        "refused a WebSocket from 127.0.0.1:5555: 403 origin http://app.example:8080 is not allowed; "
        "to allow it: --allow-origin http://app.example:8080 --allow-origin http://127.0.0.1:3002 "
        "(a list replaces the same-host default; the second keeps this relay's page)");
  o.tls_cert = "cert.pem";
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kOrigin, 403), o, 0),
             Catch::Contains("--allow-origin https://127.0.0.1:3002"));
}

TEST_CASE("with --allow-origin given, a refused origin's advice is that origin alone", "[relay]") {
  HttpRequest req;
  req.headers = {{"origin", "http://other.example"}, {"host", "127.0.0.1:3002"}};
  RelayOptions o;
  o.allow_origin = {"http://app.example"};
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kOrigin, 403), o, 0),
             Catch::EndsWith("to allow it: --allow-origin http://other.example"));
}

TEST_CASE("a refused origin without a Host header still says the page needs its origin", "[relay]") {
  HttpRequest req;
  req.headers = {{"origin", "http://x.example"}};
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kOrigin, 403), RelayOptions{}, 0),
             Catch::EndsWith("and --allow-origin for this relay's own page (a list replaces the same-host default)"));
}

TEST_CASE("token, client limit, shutdown, bad upgrade and plain HTTP on TLS each say what to do", "[relay]") {
  HttpRequest req;
  RelayOptions o;
  o.max_clients = 7;
  RefusedUpgrade wrong = refused(&req, RefusalReason::kToken, 401);
  wrong.token_sent = true;
  CHECK_THAT(refusal_line(wrong, o, 0), Catch::Contains("401 wrong token; the client must send the relay's --token"));
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kToken, 401), o, 0), Catch::Contains("401 no token;"));
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kMaxClients, 503), o, 0),
             Catch::Contains("503 7 clients are connected; to allow more: --max-clients N"));
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kShuttingDown, 503), o, 0),
             Catch::EndsWith("the relay is shutting down"));
  RefusedUpgrade bad = refused(&req, RefusalReason::kBadUpgrade, 400);
  bad.message = "missing Sec-WebSocket-Key\x1b[2J";
  CHECK_THAT(refusal_line(bad, o, 0), Catch::EndsWith("not a valid WebSocket upgrade: missing Sec-WebSocket-Key?[2J"));
  CHECK(refusal_line(refused(nullptr, RefusalReason::kNotTls, 400), o, 0) ==
        "refused a connection from 127.0.0.1:5555: 400 plain HTTP on the TLS port (--tls-cert); "
        "the client must use https:// or wss://");
}

TEST_CASE("refusals not logged from the address are counted on the next line", "[relay]") {
  HttpRequest req;
  CHECK_THAT(refusal_line(refused(&req, RefusalReason::kShuttingDown, 503), RelayOptions{}, 41),
             Catch::EndsWith("(41 more refused from this address since)"));
}

TEST_CASE("a peer's header reaches the log as bounded printable ASCII", "[relay]") {
  CHECK(printable("ok\r\nX-Injected: 1") == "ok??X-Injected: 1");
  std::string big(500, 'a');
  CHECK(printable(big) == std::string(200, 'a') + "...");
  CHECK(printable("caf\xc3\xa9") == "caf??");
}
