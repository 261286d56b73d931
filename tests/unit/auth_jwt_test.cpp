// SPDX-License-Identifier: Apache-2.0
// JWT verification (auth/jwt.h): tokens signed here with OpenSSL, each rule
// that says no tested with the reason a log line shows, and the good token
// of each algorithm accepted.
#include <catch2/catch.hpp>

#include <fstream>

#include "auth_jwt_support.h"
#include "smws/auth/jwt.h"
#include "support.h"

using nlohmann::json;
using namespace smws::auth;
using namespace smws::test;
using smws::Status;

namespace {

constexpr double kNow = 1800000000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-hs256";

EVP_PKEY* shared_rsa() {
  static Pkey key = rsa_key();
  return key.get();
}
EVP_PKEY* shared_ec() {
  static Pkey key = ec_key();
  return key.get();
}

json claims(double exp = kNow + 600) {
  return {{"sub", "alice"}, {"groups", {"approvers", "ops"}}, {"exp", exp}, {"iat", kNow - 10}};
}

JwtKeys rsa_keys() {
  JwtKeys k;
  REQUIRE(k.add_public_keys_pem(public_pem(shared_rsa()), "rsa.pem").ok());
  return k;
}
JwtKeys ec_keys() {
  JwtKeys k;
  REQUIRE(k.add_public_keys_pem(public_pem(shared_ec()), "ec.pem").ok());
  return k;
}
JwtKeys secret_keys() {
  JwtKeys k;
  REQUIRE(k.set_secret(kSecret + "\n", "secret").ok());
  return k;
}

// Replaces the signature part of a token.
std::string with_signature(const std::string& token, const std::string& sig) {
  return token.substr(0, token.rfind('.') + 1) + sig;
}

}  // namespace

TEST_CASE("an RS256 token signed by the configured RSA key names its subject and groups", "[auth][jwt]") {
  JwtKeys keys = rsa_keys();
  CHECK(keys.algorithms() == std::vector<std::string>{"RS256"});
  auto r = keys.verify(rs256(shared_rsa(), claims()), kNow, {});
  REQUIRE(r.ok);
  CHECK(r.identity.name == "alice");
  CHECK(r.identity.groups == std::vector<std::string>{"approvers", "ops"});
  CHECK(r.identity.via == "jwt");
  CHECK(r.identity.verified());
  REQUIRE(r.identity.expires_at);
  CHECK(*r.identity.expires_at == kNow + 600);
}

TEST_CASE("an ES256 token's R||S signature is verified against the P-256 key", "[auth][jwt]") {
  JwtKeys keys = ec_keys();
  CHECK(keys.algorithms() == std::vector<std::string>{"ES256"});
  auto r = keys.verify(es256(shared_ec(), claims()), kNow, {});
  REQUIRE(r.ok);
  CHECK(r.identity.name == "alice");
}

TEST_CASE("an HS256 token made with the secret file's secret (its newline trimmed) is accepted", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  auto r = keys.verify(hs256(kSecret, claims()), kNow, {});
  REQUIRE(r.ok);
  CHECK(r.identity.name == "alice");
  // The newline is not part of the secret.
  CHECK(keys.verify(hs256(kSecret + "\n", claims()), kNow, {}).reason == "bad signature");
}

TEST_CASE("several keys in one PEM file: each verifies its own algorithm", "[auth][jwt]") {
  Pkey other = ec_key();
  JwtKeys keys;
  REQUIRE(keys.add_public_keys_pem(public_pem(shared_rsa()) + public_pem(other.get()) + public_pem(shared_ec()),
                                   "keys.pem")
              .ok());
  CHECK(keys.algorithms() == std::vector<std::string>{"ES256", "RS256"});
  CHECK(keys.verify(rs256(shared_rsa(), claims()), kNow, {}).ok);
  CHECK(keys.verify(es256(shared_ec(), claims()), kNow, {}).ok);
  CHECK(keys.verify(es256(other.get(), claims()), kNow, {}).ok);
}

TEST_CASE("alg none is refused, in any spelling, even without a signature", "[auth][jwt]") {
  JwtKeys keys = rsa_keys();
  for (const char* alg : {"none", "None", "NONE"}) {
    const std::string token = signing_input({{"alg", alg}}, claims()) + ".";
    CHECK(keys.verify(token, kNow, {}).reason == "alg none refused");
    CHECK(keys.verify(token + "AAAA", kNow, {}).reason == "alg none refused");
  }
}

TEST_CASE("HS256 signed with the RSA public key's PEM is refused: no algorithm confusion", "[auth][jwt]") {
  JwtKeys keys = rsa_keys();
  const std::string pem = public_pem(shared_rsa());
  auto r = keys.verify(hs256(pem, claims()), kNow, {});
  CHECK_FALSE(r.ok);
  CHECK(r.reason == "alg HS256 refused: only public keys are configured (--jwt-key), no secret");
  // Nor the other way round: an RS256 token against only a secret.
  CHECK(secret_keys().verify(rs256(shared_rsa(), claims()), kNow, {}).reason ==
        "alg RS256 refused: no RSA key is configured");
  CHECK(rsa_keys().verify(es256(shared_ec(), claims()), kNow, {}).reason ==
        "alg ES256 refused: no EC P-256 key is configured");
}

TEST_CASE("a token signed by another key, or tampered with, has a bad signature", "[auth][jwt]") {
  Pkey stranger = rsa_key();
  JwtKeys keys = rsa_keys();
  CHECK(keys.verify(rs256(stranger.get(), claims()), kNow, {}).reason == "bad signature");
  // Payload swapped for one naming someone else, signature kept.
  const std::string good = rs256(shared_rsa(), claims());
  json evil = claims();
  evil["sub"] = "mallory";
  const std::string forged = b64(json{{"alg", "RS256"}, {"typ", "JWT"}}.dump()) + "." + b64(evil.dump()) +
                             good.substr(good.rfind('.'));
  CHECK(keys.verify(forged, kNow, {}).reason == "bad signature");
  // ES256 with a signature of the wrong length or a DER signature.
  const std::string es = es256(shared_ec(), claims());
  CHECK(ec_keys().verify(with_signature(es, b64(std::string(63, 'x'))), kNow, {}).reason == "bad signature");
  CHECK(ec_keys().verify(with_signature(es, b64(evp_sign(shared_ec(), es.substr(0, es.rfind('.'))))), kNow, {})
            .reason == "bad signature");
  CHECK(secret_keys().verify(hs256("another secret of at least thirty-two bytes", claims()), kNow, {}).reason ==
        "bad signature");
}

TEST_CASE("exp is required and is checked against now, without leeway by default", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  CHECK(keys.verify(hs256(kSecret, claims(kNow - 1)), kNow, {}).reason == "token expired");
  CHECK(keys.verify(hs256(kSecret, claims(kNow)), kNow, {}).reason == "token expired");  // valid only before exp
  CHECK(keys.verify(hs256(kSecret, claims(kNow + 1)), kNow, {}).ok);
  json no_exp = claims();
  no_exp.erase("exp");
  CHECK(keys.verify(hs256(kSecret, no_exp), kNow, {}).reason == "token has no exp (an expiry is required)");
  json text_exp = claims();
  text_exp["exp"] = "2030-01-01";
  CHECK(keys.verify(hs256(kSecret, text_exp), kNow, {}).reason == "token exp is not a number");
  JwtOptions lenient;
  lenient.leeway_seconds = 30;
  CHECK(keys.verify(hs256(kSecret, claims(kNow - 10)), kNow, lenient).ok);
}

TEST_CASE("nbf in the future is not yet valid", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  json c = claims();
  c["nbf"] = kNow + 60;
  CHECK(keys.verify(hs256(kSecret, c), kNow, {}).reason == "token not yet valid (nbf)");
  CHECK(keys.verify(hs256(kSecret, c), kNow + 60, {}).ok);
  c["nbf"] = "soon";
  CHECK(keys.verify(hs256(kSecret, c), kNow, {}).reason == "token nbf is not a number");
}

TEST_CASE("aud is checked when an audience is configured: a string or one of a list", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  JwtOptions o;
  o.audience = "smws-relay";
  json c = claims();
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "wrong audience (the token has no aud)");
  CHECK(keys.verify(hs256(kSecret, c), kNow, {}).ok);  // not configured: not checked
  c["aud"] = "grafana";
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "wrong audience");
  c["aud"] = "smws-relay";
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).ok);
  c["aud"] = {"grafana", "smws-relay"};
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).ok);
  c["aud"] = {"grafana"};
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "wrong audience");
}

TEST_CASE("the name and groups come from the configured claims", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  JwtOptions o;
  o.name_claim = "email";
  o.groups_claim = "roles";
  json c = {{"exp", kNow + 60}, {"email", "alice@example.com"}, {"roles", {"ops", "ops"}}, {"groups", {"x"}}};
  auto r = keys.verify(hs256(kSecret, c), kNow, o);
  REQUIRE(r.ok);
  CHECK(r.identity.name == "alice@example.com");
  CHECK(r.identity.groups == std::vector<std::string>{"ops"});
  // Absent groups claim: no groups.
  c.erase("roles");
  r = keys.verify(hs256(kSecret, c), kNow, o);
  REQUIRE(r.ok);
  CHECK(r.identity.groups.empty());
  // A groups claim that is not a list of strings is refused, not guessed at.
  c["roles"] = "ops";
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "roles claim is not a list of strings");
  c["roles"] = {1, 2};
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason ==
        "roles claim is not a list of strings (1-256 characters each)");
  // No name.
  c.erase("email");
  c["roles"] = {"ops"};
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "no email claim (the name)");
  c["email"] = 42;
  CHECK(keys.verify(hs256(kSecret, c), kNow, o).reason == "email claim is not a name (a string of 1-256 characters)");
}

TEST_CASE("malformed tokens are refused before any signature work", "[auth][jwt]") {
  JwtKeys keys = secret_keys();
  CHECK(keys.verify("abc", kNow, {}).reason == "malformed token: not three dot-separated parts");
  CHECK(keys.verify("a.b.c.d", kNow, {}).reason == "malformed token: not three dot-separated parts");
  CHECK(keys.verify("a+b.c.d", kNow, {}).reason == "malformed token: header is not base64url");
  CHECK(keys.verify(b64("[1]") + "." + b64("{}") + ".AAAA", kNow, {}).reason ==
        "malformed token: header is not a JSON object");
  CHECK(keys.verify(b64("{}") + "." + b64("{}") + ".AAAA", kNow, {}).reason == "malformed token: header has no alg");
  CHECK(keys.verify(std::string(kMaxJwtSize + 1, 'a'), kNow, {}).reason.find("longer than") != std::string::npos);
  CHECK(keys.verify(hs256(kSecret, claims(), {{"alg", "HS256"}, {"crit", {"exp"}}}), kNow, {}).reason ==
        "header names crit extensions; none is understood");
  CHECK(keys.verify(hs256(kSecret, claims(), {{"alg", "HS512"}}), kNow, {}).reason ==
        "alg HS512 refused: only RS256, ES256 and HS256 are supported");
  // A payload that is not an object, correctly signed.
  const std::string input = b64(json{{"alg", "HS256"}}.dump()) + "." + b64("[]");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &size);
  CHECK(keys.verify(input + "." + b64(std::string(reinterpret_cast<char*>(mac), size)), kNow, {}).reason ==
        "malformed token: payload is not a JSON object");
}

TEST_CASE("keys that cannot verify JWTs safely are refused when loaded", "[auth][jwt]") {
  JwtKeys keys;
  Status st = keys.add_public_keys_pem(private_pem(shared_ec()), "priv.pem");
  CHECK(st.code == Status::kBadInput);
  CHECK(st.message.find("--jwt-key priv.pem: block 1 is a private key") == 0);
  Pkey small = rsa_key(1024);
  st = keys.add_public_keys_pem(public_pem(small.get()), "small.pem");
  CHECK(st.message == "--jwt-key small.pem: block 1: an RSA key of 1024 bits; RS256 needs at least 2048");
  Pkey p384 = ec_key("P-384");
  st = keys.add_public_keys_pem(public_pem(p384.get()), "p384.pem");
  CHECK(st.message.find("ES256 needs P-256") != std::string::npos);
  st = keys.add_public_keys_pem("just text\n", "empty.pem");
  CHECK(st.message == "--jwt-key empty.pem: no PEM public key in it");
  // A bad second block refuses the whole file: nothing is half-loaded.
  st = keys.add_public_keys_pem(public_pem(shared_rsa()) + public_pem(small.get()), "two.pem");
  CHECK(st.message.find("block 2") != std::string::npos);
  CHECK(keys.empty());
  st = keys.set_secret("short\n", "s.txt");
  CHECK(st.message == "--jwt-secret-file s.txt: the secret is 5 bytes; HS256 needs at least 32 (RFC 7518 3.2)");
  CHECK(keys.load_public_keys("/nonexistent/keys.pem").code == Status::kNotFound);
  CHECK(keys.load_secret_file("/nonexistent/secret").code == Status::kNotFound);
}

TEST_CASE("keys and secrets load from files", "[auth][jwt]") {
  TempDir dir;
  std::ofstream(dir.file("k.pem")) << public_pem(shared_ec());
  std::ofstream(dir.file("s")) << kSecret << "\r\n";
  JwtKeys keys;
  REQUIRE(keys.load_public_keys(dir.file("k.pem")).ok());
  REQUIRE(keys.load_secret_file(dir.file("s")).ok());
  CHECK(keys.algorithms() == std::vector<std::string>{"ES256", "HS256"});
  CHECK(keys.verify(hs256(kSecret, claims()), kNow, {}).ok);
  CHECK(keys.verify(es256(shared_ec(), claims()), kNow, {}).ok);
}

TEST_CASE("base64url round-trips and refuses padding and other alphabets", "[auth][jwt]") {
  std::string out;
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\xfd"}) {
    REQUIRE(base64url_decode(base64url_encode(s), &out));
    CHECK(out == s);
  }
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK_FALSE(base64url_decode("Zm9v=", &out));
  CHECK_FALSE(base64url_decode("+/8", &out));
  CHECK_FALSE(base64url_decode("Z", &out));
  CHECK_FALSE(base64url_decode("Zh", &out));  // non-zero spare bits: not the canonical "Zg"
  CHECK(looks_like_jwt("a.b.c"));
  CHECK_FALSE(looks_like_jwt("abc"));
  CHECK_FALSE(looks_like_jwt("a..c"));
  CHECK_FALSE(looks_like_jwt("a.b.c.d"));
  CHECK_FALSE(looks_like_jwt("a.b."));
}
