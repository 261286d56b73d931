// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/jwt.h"

#include "smws/auth/file_text.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace smws::auth {

// One public key and the one algorithm it verifies.
struct JwtKeys::Key {
  enum Alg { kRs256, kEs256 } alg;
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

namespace {

using json = nlohmann::json;

constexpr std::size_t kMinHmacSecret = 32;  // RFC 7518 3.2: >= the hash's 256 bits
constexpr int kMinRsaBits = 2048;           // RFC 7518 3.3
constexpr std::size_t kMaxClaimText = 256;

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool text_ok(const std::string& s) {
  if (s.empty() || s.size() > kMaxClaimText) return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

JwtResult refuse(std::string reason) {
  JwtResult r;
  r.reason = std::move(reason);
  return r;
}

bool verify_with(const EVP_PKEY* pkey, std::string_view signed_part, const unsigned char* sig,
                 std::size_t sig_size) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, const_cast<EVP_PKEY*>(pkey)) == 1 &&
            EVP_DigestVerify(ctx, sig, sig_size, reinterpret_cast<const unsigned char*>(signed_part.data()),
                             signed_part.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

// JWS ES256 signatures are R||S, 32 bytes each (RFC 7518 3.4); EVP wants
// the DER of an ECDSA-Sig-Value.
bool es256_der(const std::string& raw, std::string* der) {
  if (raw.size() != 64) return false;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return false;
  }
  unsigned char* out = nullptr;
  int size = i2d_ECDSA_SIG(sig, &out);
  ECDSA_SIG_free(sig);  // owns r and s now
  if (size <= 0) return false;
  der->assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(size));
  OPENSSL_free(out);
  return true;
}

}  // namespace

JwtKeys::JwtKeys() = default;
JwtKeys::~JwtKeys() { OPENSSL_cleanse(secret_.data(), secret_.size()); }
JwtKeys::JwtKeys(JwtKeys&&) noexcept = default;
JwtKeys& JwtKeys::operator=(JwtKeys&&) noexcept = default;

Status JwtKeys::load_public_keys(const std::string& path) {
  std::string pem;
  if (auto st = read_file_text(path, "--jwt-key", &pem); !st.ok()) return st;
  return add_public_keys_pem(pem, path);
}

Status JwtKeys::add_public_keys_pem(std::string_view pem, const std::string& source) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return Status::Error(Status::kInternal, "--jwt-key " + source + ": out of memory");
  std::vector<std::unique_ptr<Key>> found;
  std::string error;
  int block = 0;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long size = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &size) != 1) break;
    ++block;
    const std::string kind = name;
    const unsigned char* p = data;
    EVP_PKEY* pkey = nullptr;
    if (kind == "PUBLIC KEY") {
      pkey = d2i_PUBKEY(nullptr, &p, size);
    } else if (kind == "RSA PUBLIC KEY") {
      pkey = d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, size);
    } else if (kind == "CERTIFICATE") {
      if (X509* cert = d2i_X509(nullptr, &p, size)) {
        pkey = X509_get_pubkey(cert);
        X509_free(cert);
      }
    } else if (kind.find("PRIVATE KEY") != std::string::npos) {
      error = "block " + std::to_string(block) + " is a private key (" + kind +
              "); give the public key only (openssl pkey -pubout)";
    } else if (kind != "EC PARAMETERS") {
      error = "block " + std::to_string(block) + " (" + kind + ") is not a public key";
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (!error.empty()) break;
    if (kind == "EC PARAMETERS") continue;
    if (pkey == nullptr) {
      error = "block " + std::to_string(block) + " (" + kind + ") does not decode";
      break;
    }
    auto key = std::make_unique<Key>();
    key->pkey = pkey;
    const int type = EVP_PKEY_get_base_id(pkey);
    if (type == EVP_PKEY_RSA) {
      if (EVP_PKEY_get_bits(pkey) < kMinRsaBits) {
        error = "block " + std::to_string(block) + ": an RSA key of " + std::to_string(EVP_PKEY_get_bits(pkey)) +
                " bits; RS256 needs at least " + std::to_string(kMinRsaBits);
        break;
      }
      key->alg = Key::kRs256;
    } else if (type == EVP_PKEY_EC) {
      char group[64] = "";
      size_t len = 0;
      if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) != 1 ||
          (std::strcmp(group, "prime256v1") != 0 && std::strcmp(group, "P-256") != 0)) {
        error = "block " + std::to_string(block) + ": an EC key on curve " + (*group ? group : "?") +
                "; ES256 needs P-256 (prime256v1)";
        break;
      }
      key->alg = Key::kEs256;
    } else {
      error = "block " + std::to_string(block) + ": a key of a type JWTs here cannot use (RSA for RS256, EC P-256 for ES256)";
      break;
    }
    found.push_back(std::move(key));
  }
  BIO_free(bio);
  ERR_clear_error();
  if (error.empty() && found.empty()) error = "no PEM public key in it";
  if (!error.empty()) return Status::Error(Status::kBadInput, "--jwt-key " + source + ": " + error);
  for (auto& k : found) keys_.push_back(std::move(k));
  return Status::Ok();
}

Status JwtKeys::load_secret_file(const std::string& path) {
  std::string secret;
  if (auto st = read_file_text(path, "--jwt-secret-file", &secret); !st.ok()) return st;
  auto st = set_secret(std::move(secret), path);
  return st;
}

Status JwtKeys::set_secret(std::string secret, const std::string& source) {
  if (!secret.empty() && secret.back() == '\n') secret.pop_back();
  if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.size() < kMinHmacSecret) {
    const std::size_t size = secret.size();
    OPENSSL_cleanse(secret.data(), secret.size());
    return Status::Error(Status::kBadInput, "--jwt-secret-file " + source + ": the secret is " +
                                                std::to_string(size) + " bytes; HS256 needs at least " +
                                                std::to_string(kMinHmacSecret) + " (RFC 7518 3.2)");
  }
  OPENSSL_cleanse(secret_.data(), secret_.size());
  secret_ = std::move(secret);
  return Status::Ok();
}

bool JwtKeys::empty() const { return keys_.empty() && secret_.empty(); }

std::vector<std::string> JwtKeys::algorithms() const {
  std::vector<std::string> out;
  auto has = [&](Key::Alg a) {
    return std::any_of(keys_.begin(), keys_.end(), [a](const auto& k) { return k->alg == a; });
  };
  if (has(Key::kEs256)) out.push_back("ES256");
  if (!secret_.empty()) out.push_back("HS256");
  if (has(Key::kRs256)) out.push_back("RS256");
  return out;
}

JwtResult JwtKeys::verify(std::string_view token, double now, const JwtOptions& options) const {
  if (token.size() > kMaxJwtSize) return refuse("malformed token: longer than " + std::to_string(kMaxJwtSize) + " bytes");
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return refuse("malformed token: not three dot-separated parts");
  }
  std::string header_text, payload_text, signature;
  if (!base64url_decode(token.substr(0, dot1), &header_text)) return refuse("malformed token: header is not base64url");
  if (!base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), &payload_text)) {
    return refuse("malformed token: payload is not base64url");
  }
  if (!base64url_decode(token.substr(dot2 + 1), &signature)) return refuse("malformed token: signature is not base64url");
  json header = json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return refuse("malformed token: header is not a JSON object");
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return refuse("malformed token: header has no alg");
  const std::string alg = alg_it->get<std::string>();
  std::string lower = alg;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "none") return refuse("alg none refused");
  if (header.contains("crit")) return refuse("header names crit extensions; none is understood");

  const std::string_view signed_part = token.substr(0, dot2);
  bool good = false;
  if (alg == "HS256") {
    if (secret_.empty()) {
      return refuse(keys_.empty() ? "alg HS256 refused: no secret is configured"
                                  : "alg HS256 refused: only public keys are configured (--jwt-key), no secret");
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    if (HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
             reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
             &mac_size) == nullptr) {
      return refuse("bad signature");
    }
    good = signature.size() == mac_size && CRYPTO_memcmp(mac, signature.data(), mac_size) == 0;
  } else if (alg == "RS256" || alg == "ES256") {
    const Key::Alg want = alg == "RS256" ? Key::kRs256 : Key::kEs256;
    const bool have_key = std::any_of(keys_.begin(), keys_.end(), [want](const auto& k) { return k->alg == want; });
    if (!have_key) {
      return refuse("alg " + alg + " refused: no " + (want == Key::kRs256 ? "RSA" : "EC P-256") +
                    " key is configured");
    }
    std::string der;
    const std::string* sig = &signature;
    if (want == Key::kEs256) {
      if (!es256_der(signature, &der)) return refuse("bad signature");
      sig = &der;
    }
    for (const auto& k : keys_) {
      if (k->alg != want) continue;
      if (verify_with(k->pkey, signed_part, reinterpret_cast<const unsigned char*>(sig->data()), sig->size())) {
        good = true;
        break;
      }
    }
  } else {
    return refuse("alg " + alg.substr(0, 16) + " refused: only RS256, ES256 and HS256 are supported");
  }
  if (!good) return refuse("bad signature");

  json claims = json::parse(payload_text, nullptr, false);
  if (claims.is_discarded() || !claims.is_object()) return refuse("malformed token: payload is not a JSON object");
  auto exp = claims.find("exp");
  if (exp == claims.end()) return refuse("token has no exp (an expiry is required)");
  if (!exp->is_number()) return refuse("token exp is not a number");
  const double exp_at = exp->get<double>();
  if (now >= exp_at + options.leeway_seconds) return refuse("token expired");
  if (auto nbf = claims.find("nbf"); nbf != claims.end()) {
    if (!nbf->is_number()) return refuse("token nbf is not a number");
    if (now + options.leeway_seconds < nbf->get<double>()) return refuse("token not yet valid (nbf)");
  }
  if (!options.audience.empty()) {
    auto aud = claims.find("aud");
    bool match = false;
    if (aud != claims.end() && aud->is_string()) match = *aud == options.audience;
    if (aud != claims.end() && aud->is_array()) {
      match = std::any_of(aud->begin(), aud->end(),
                          [&](const json& a) { return a.is_string() && a == options.audience; });
    }
    if (!match) return refuse(aud == claims.end() ? "wrong audience (the token has no aud)" : "wrong audience");
  }
  auto name = claims.find(options.name_claim);
  if (name == claims.end()) return refuse("no " + options.name_claim + " claim (the name)");
  if (!name->is_string() || !text_ok(name->get<std::string>())) {
    return refuse(options.name_claim + " claim is not a name (a string of 1-256 characters)");
  }
  JwtResult r;
  r.identity.name = name->get<std::string>();
  r.identity.via = std::string(kViaJwt);
  r.identity.expires_at = exp_at;
  if (auto groups = claims.find(options.groups_claim); groups != claims.end()) {
    if (!groups->is_array()) return refuse(options.groups_claim + " claim is not a list of strings");
    for (const auto& g : *groups) {
      if (!g.is_string() || !text_ok(g.get<std::string>())) {
        return refuse(options.groups_claim + " claim is not a list of strings (1-256 characters each)");
      }
      const std::string group = g.get<std::string>();
      if (std::find(r.identity.groups.begin(), r.identity.groups.end(), group) == r.identity.groups.end()) {
        r.identity.groups.push_back(group);
      }
    }
  }
  r.ok = true;
  return r;
}

bool looks_like_jwt(std::string_view token) {
  const std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos || dot1 == 0) return false;
  const std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || dot2 == dot1 + 1 || dot2 + 1 >= token.size()) return false;
  if (token.find('.', dot2 + 1) != std::string_view::npos) return false;
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (i != dot1 && i != dot2 && b64_value(token[i]) < 0) return false;
  }
  return true;
}

std::string base64url_encode(std::string_view bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool base64url_decode(std::string_view text, std::string* out) {
  out->clear();
  if (text.size() % 4 == 1) return false;
  out->reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int v = b64_value(c);
    if (v < 0) return false;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  // The unused low bits of the last character must be zero: one encoding
  // per byte string, so a signature cannot be varied without changing it.
  return (buffer & ((1u << bits) - 1)) == 0;
}

}  // namespace smws::auth
