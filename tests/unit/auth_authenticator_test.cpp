// SPDX-License-Identifier: Apache-2.0
// Admission by identity (auth/authenticator.h): each source, their order,
// the 401s and 403s, and the untouched legitimate client.
#include <catch2/catch.hpp>

#include <map>

#include "auth_jwt_support.h"
#include "smws/auth/authenticator.h"

using nlohmann::json;
using namespace smws::auth;
using smws::Status;

namespace {

constexpr double kNow = 1800000000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-hs256";

std::string hash_of(const std::string& token) {
  const Sha256 h = sha256(token);
  return "sha256:" + hex(h.data(), h.size());
}

std::shared_ptr<const UsersFile> users() {
  auto f = std::make_shared<UsersFile>();
  REQUIRE(UsersFile::parse("alice approvers,ops " + hash_of("tok-alice") + "\nbob viewers " + hash_of("tok-bob") + "\n",
                           "users", f.get())
              .ok());
  return f;
}

std::shared_ptr<const JwtKeys> jwt() {
  auto k = std::make_shared<JwtKeys>();
  REQUIRE(k->set_secret(kSecret, "secret").ok());
  return k;
}

std::string jwt_for(const std::string& sub, double exp = kNow + 60) {
  return smws::test::hs256(kSecret, {{"sub", sub}, {"exp", exp}, {"groups", {"approvers"}}});
}

TrustedProxies proxies() {
  TrustedProxies p;
  REQUIRE(TrustedProxies::parse({"127.0.0.2"}, &p).ok());
  return p;
}

struct Request {
  std::optional<std::string> token;
  std::string peer = "127.0.0.1:40000";
  std::map<std::string, std::string> headers;  // lower-case names

  AuthRequest get() const {
    AuthRequest r;
    r.token = token;
    r.peer = peer;
    r.now = kNow;
    r.header = [this](std::string_view name) -> std::optional<std::string> {
      std::string lower(name);
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto it = headers.find(lower);
      if (it == headers.end()) return std::nullopt;
      return it->second;
    };
    return r;
  }
};

}  // namespace

TEST_CASE("no credential option: everyone is anonymous, and may decide unverified", "[auth][authenticator]") {
  Authenticator a;
  CHECK_FALSE(a.roles_enabled());
  CHECK_FALSE(a.requires_credentials());
  Request req;
  req.token = "anything";
  req.headers["x-forwarded-user"] = "ceo";  // means nothing here
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.to_json() == json::parse(R"({"name":"anonymous","groups":[],"via":"none"})"));
  CHECK_FALSE(r.identity.verified());
  CHECK(r.client_address == "127.0.0.1:40000");
}

TEST_CASE("a shared --token alone: the right token is the identity \"token\", others are refused 401", "[auth][authenticator]") {
  AuthConfig c;
  c.shared_token = "s3cret";
  Authenticator a(c);
  CHECK_FALSE(a.roles_enabled());
  CHECK(a.requires_credentials());
  Request req;
  req.token = "s3cret";
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.to_json() == json::parse(R"({"name":"token","groups":[],"via":"token"})"));
  req.token = "s3cre";
  r = a.authenticate(req.get());
  CHECK_FALSE(r.admitted);
  CHECK(r.http_status == 401);
  CHECK(r.reason == "wrong token");
  req.token.reset();
  r = a.authenticate(req.get());
  CHECK(r.http_status == 401);
  CHECK(r.reason == "no credentials (a token or a trusted proxy's headers)");
}

TEST_CASE("users file: a listed token is that person, an unlisted one is 401 without the token in the reason",
          "[auth][authenticator]") {
  AuthConfig c;
  c.users = users();
  Authenticator a(c);
  CHECK(a.roles_enabled());
  Request req;
  req.token = "tok-alice";
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.name == "alice");
  CHECK(r.identity.via == "users");
  req.token = "tok-mallory";
  r = a.authenticate(req.get());
  CHECK(r.http_status == 401);
  CHECK(r.reason == "the token is not one of --users");
  CHECK(r.reason.find("tok-mallory") == std::string::npos);
  req.token.reset();
  CHECK(a.authenticate(req.get()).http_status == 401);
}

TEST_CASE("JWT: a valid one admits with its expiry, an expired one says so", "[auth][authenticator]") {
  AuthConfig c;
  c.jwt = jwt();
  Authenticator a(c);
  Request req;
  req.token = jwt_for("carol");
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.name == "carol");
  CHECK(r.identity.via == "jwt");
  CHECK(r.identity.expires_at == kNow + 60);
  req.token = jwt_for("carol", kNow - 1);
  r = a.authenticate(req.get());
  CHECK(r.http_status == 401);
  CHECK(r.reason == "jwt: token expired");
  req.token = "not-a-jwt";
  CHECK(a.authenticate(req.get()).reason == "jwt: malformed token: not three dot-separated base64url parts");
}

TEST_CASE("several sources: the first that accepts admits", "[auth][authenticator]") {
  AuthConfig c;
  c.users = users();
  c.jwt = jwt();
  c.shared_token = "shared";
  c.proxies = proxies();
  Authenticator a(c);
  Request req;
  req.token = "tok-bob";
  CHECK(a.authenticate(req.get()).identity.name == "bob");
  req.token = jwt_for("dave");
  CHECK(a.authenticate(req.get()).identity.via == "jwt");
  req.token = "shared";
  CHECK(a.authenticate(req.get()).identity.via == "token");
  // A JWT's reason beats the users file's: it says more.
  req.token = jwt_for("dave", kNow - 5);
  CHECK(a.authenticate(req.get()).reason == "jwt: token expired");
  req.token = "nothing";
  CHECK(a.authenticate(req.get()).reason == "the token is not one of --users");
  // The trusted proxy's header comes first, even with a token beside it.
  req.peer = "127.0.0.2:50000";
  req.token = "tok-bob";
  req.headers["x-forwarded-user"] = "erin";
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.name == "erin");
  CHECK(r.identity.via == "proxy");
}

TEST_CASE("trusted proxy: its headers name the person and X-Forwarded-For the client", "[auth][authenticator]") {
  AuthConfig c;
  c.proxies = proxies();
  Authenticator a(c);
  CHECK(a.roles_enabled());
  Request req;
  req.peer = "127.0.0.2:50000";
  req.headers["x-forwarded-user"] = " alice@example.com ";
  req.headers["x-forwarded-groups"] = "approvers, ops,,approvers";
  req.headers["x-forwarded-for"] = "10.6.6.6, 192.0.2.10";
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.to_json() ==
        json::parse(R"({"name":"alice@example.com","groups":["approvers","ops"],"via":"proxy"})"));
  CHECK(r.client_address == "192.0.2.10");
  // Without X-Forwarded-For the record names the proxy.
  req.headers.erase("x-forwarded-for");
  CHECK(a.authenticate(req.get()).client_address == "127.0.0.2:50000");
  // A trusted peer with no user header is not anyone: 401.
  req.headers.clear();
  r = a.authenticate(req.get());
  CHECK(r.http_status == 401);
  // An empty user header is no user either.
  req.headers["x-forwarded-user"] = "";
  CHECK(a.authenticate(req.get()).http_status == 401);
  // A control character in the name is refused, not logged as is.
  req.headers["x-forwarded-user"] = "ali\x01" "ce";
  r = a.authenticate(req.get());
  CHECK(r.http_status == 401);
  CHECK(r.reason == "trusted proxy sent a X-Forwarded-User that is not a name");
}

TEST_CASE("identity headers from an untrusted peer are refused 403, even with a good token", "[auth][authenticator]") {
  AuthConfig c;
  c.proxies = proxies();
  c.users = users();
  Authenticator a(c);
  Request req;
  req.peer = "127.0.0.1:40000";
  req.token = "tok-alice";
  req.headers["x-forwarded-user"] = "ceo";
  AuthResult r = a.authenticate(req.get());
  CHECK_FALSE(r.admitted);
  CHECK(r.http_status == 403);
  CHECK(r.reason == "X-Forwarded-User from 127.0.0.1, which is not a --trusted-proxy");
  req.headers.clear();
  req.headers["x-forwarded-groups"] = "approvers";
  CHECK(a.authenticate(req.get()).reason == "X-Forwarded-Groups from 127.0.0.1, which is not a --trusted-proxy");
  req.headers["x-forwarded-user"] = "";
  CHECK(a.authenticate(req.get()).http_status == 403);
  // The same client without the headers is untouched.
  req.headers.clear();
  CHECK(a.authenticate(req.get()).identity.name == "alice");
}

TEST_CASE("the header names are configurable", "[auth][authenticator]") {
  AuthConfig c;
  c.proxies = proxies();
  c.user_header = "Remote-User";
  c.groups_header = "Remote-Groups";
  Authenticator a(c);
  Request req;
  req.peer = "127.0.0.2:1";
  req.headers["remote-user"] = "zoe";
  req.headers["remote-groups"] = "ops";
  req.headers["x-forwarded-user"] = "ignored";
  AuthResult r = a.authenticate(req.get());
  REQUIRE(r.admitted);
  CHECK(r.identity.name == "zoe");
  CHECK(r.identity.groups == std::vector<std::string>{"ops"});
  req.peer = "127.0.0.1:1";
  CHECK(a.authenticate(req.get()).reason == "Remote-User and Remote-Groups from 127.0.0.1, which is not a --trusted-proxy");
}
