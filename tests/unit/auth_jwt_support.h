// SPDX-License-Identifier: Apache-2.0
// Minting JWTs for the auth tests with OpenSSL itself (not with the code
// under test): keys, PEM text, RS256 / ES256 / HS256 signatures.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "smws/auth/jwt.h"

namespace smws::test {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

inline Pkey rsa_key(int bits = 2048) { return Pkey(EVP_RSA_gen(static_cast<unsigned>(bits))); }
inline Pkey ec_key(const char* curve = "P-256") { return Pkey(EVP_EC_gen(curve)); }

inline std::string public_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  return out;
}

inline std::string private_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  return out;
}

inline std::string b64(const std::string& s) { return smws::auth::base64url_encode(s); }

inline std::string signing_input(const nlohmann::json& header, const nlohmann::json& claims) {
  return b64(header.dump()) + "." + b64(claims.dump());
}

inline std::string evp_sign(EVP_PKEY* key, const std::string& input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t size = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &size, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(size, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &size,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(size);
  EVP_MD_CTX_free(ctx);
  return sig;
}

inline std::string rs256(EVP_PKEY* key, const nlohmann::json& claims, nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}}) {
  const std::string input = signing_input(header, claims);
  return input + "." + b64(evp_sign(key, input));
}

// JWS wants R||S (32 bytes each), not EVP's DER.
inline std::string es256(EVP_PKEY* key, const nlohmann::json& claims, nlohmann::json header = {{"alg", "ES256"}, {"typ", "JWT"}}) {
  const std::string input = signing_input(header, claims);
  const std::string der = evp_sign(key, input);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  unsigned char raw[64];
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
  ECDSA_SIG_free(sig);
  return input + "." + b64(std::string(reinterpret_cast<char*>(raw), 64));
}

inline std::string hs256(const std::string& secret, const nlohmann::json& claims,
                         nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}}) {
  const std::string input = signing_input(header, claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &size);
  return input + "." + b64(std::string(reinterpret_cast<char*>(mac), size));
}

}  // namespace smws::test
