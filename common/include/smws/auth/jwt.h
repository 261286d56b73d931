// SPDX-License-Identifier: Apache-2.0
// JWT verification for --jwt-key FILE (RS256, ES256) and --jwt-secret-file
// FILE (HS256): a Bearer / ?token= that is a compact JWS (RFC 7515/7519)
// signed by one of the relay's keys names the person (SPEC "Who may decide").
//
// Why OpenSSL's EVP directly, not libjwt or cpp-jwt: the relay already links
// OpenSSL (TLS), so this adds no dependency; and the rules that matter —
// which `alg` a key may verify, never `none`, no HS256 against a public key
// (algorithm confusion), `exp` required — are a dozen explicit lines here
// instead of options of a library whose defaults have differed between
// versions (both libraries have shipped with `none` or key/alg confusion
// reachable through their API). Three algorithms and base64url are all we
// need; every other `alg` is refused.
//
// The rules, each a refusal reason (the text a log line shows):
//   - three base64url segments, each at most kMaxJwtSize in all; header and
//     payload JSON objects                          "malformed token: ..."
//   - header `alg` "none" (any case)                "alg none refused"
//   - `alg` not one that a loaded key verifies: RS256 needs an RSA key
//     (>= 2048 bits), ES256 a P-256 key, HS256 the secret. An HS256 token
//     when only public keys are loaded is refused ("alg HS256 refused: no
//     secret is configured"), never verified with the public key's bytes
//     as an HMAC secret                             "alg X refused: ..."
//   - header `crit` present (RFC 7515 4.1.11: we understand no extension)
//   - signature checked against every key of that alg; none verifies
//                                                   "bad signature"
//     (ES256 signatures are R||S, 64 bytes, converted to DER for EVP)
//   - `exp` required, a number; now >= exp          "token expired"
//   - `nbf`, when present, a number; now < nbf      "token not yet valid"
//   - `aud` checked when an audience is configured: the string, or one
//     element of the array, equals it               "wrong audience"
//   - the name claim (default `sub`) a non-empty string of at most 256
//     characters without control characters        "no sub claim" ...
//   - the groups claim (default `groups`): absent = no groups; else a list of
//     strings (each 1-256 characters)               "groups claim is not ..."
// Clock skew: none by default (leeway_seconds 0). Both sides are expected to
// run NTP; a leeway would keep an expired token valid for that long and the
// relay closes connections at exp. JwtOptions::leeway_seconds allows one.
//
// Threads: JwtKeys is immutable once loaded; verify() is const and may be
// called from any thread (EVP contexts are made per call). ws-relay loads
// keys at startup and on SIGHUP and swaps them in under its lock.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smws/auth/identity.h"
#include "smws/status.h"

namespace smws::auth {

// A token larger than this is refused before any work: Bearer headers of
// real SSO tokens are a few KiB; 16 KiB bounds the decoding and hashing a
// stranger can make the relay do per request.
constexpr std::size_t kMaxJwtSize = 16 * 1024;

struct JwtOptions {
  std::string audience;               // --jwt-audience; empty: aud not checked
  std::string name_claim = "sub";     // --jwt-name-claim
  std::string groups_claim = "groups";// --jwt-groups-claim
  double leeway_seconds = 0;          // see "Clock skew" above
};

struct JwtResult {
  bool ok = false;
  Identity identity;   // ok: via "jwt", expires_at = exp
  std::string reason;  // !ok: why ("token expired"); never contains the token
};

class JwtKeys {
 public:
  JwtKeys();
  ~JwtKeys();
  JwtKeys(JwtKeys&&) noexcept;
  JwtKeys& operator=(JwtKeys&&) noexcept;
  JwtKeys(const JwtKeys&) = delete;
  JwtKeys& operator=(const JwtKeys&) = delete;

  // --jwt-key FILE: every PEM block of the file ("PUBLIC KEY", or a
  // "CERTIFICATE" whose key is taken); RSA keys verify RS256, EC P-256 keys
  // ES256. A private key, another curve, an RSA key under 2048 bits, or a
  // file with no key is an error naming the file (and block number).
  // May be called several times (repeatable flag); keys accumulate.
  Status load_public_keys(const std::string& path);
  Status add_public_keys_pem(std::string_view pem, const std::string& source);

  // --jwt-secret-file FILE: the HS256 secret, one trailing "\n" or "\r\n"
  // removed. At least 32 bytes (RFC 7518 3.2: a key as long as the hash).
  Status load_secret_file(const std::string& path);
  Status set_secret(std::string secret, const std::string& source);

  bool empty() const;
  // The algorithms a token may use with these keys, e.g. {"ES256","RS256"}.
  std::vector<std::string> algorithms() const;

  // Verifies token at wall-clock time now (seconds since the epoch).
  JwtResult verify(std::string_view token, double now, const JwtOptions& options) const;

 private:
  struct Key;
  std::vector<std::unique_ptr<Key>> keys_;  // public keys
  std::string secret_;                      // HS256; empty: none
};

// Three non-empty base64url segments separated by two dots: what a users-file
// token (base64url, no dot) never is, so the authenticator knows which
// source to ask.
bool looks_like_jwt(std::string_view token);

// base64url (RFC 4648 section 5) without padding; decode refuses padding and
// any other character. Used for tokens and signatures, and by the tests.
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string* out);

}  // namespace smws::auth
