// SPDX-License-Identifier: Apache-2.0
#include "smws/net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/NetSSL.h>

#include <fstream>

namespace smws::net {

struct TlsContext::Impl {
  Poco::Net::Context::Ptr context;
};

TlsContext::~TlsContext() = default;

SSL_CTX* TlsContext::ssl_ctx() const { return impl_->context->sslContext(); }

Status TlsContext::load_server(const std::string& cert_file, const std::string& key_file,
                               std::unique_ptr<TlsContext>* out) {
  // POCO reports a missing file as a generic OpenSSL error; say which file.
  for (const std::string* file : {&cert_file, &key_file}) {
    if (!std::ifstream(*file).good()) {
      return Status::Error(Status::kNotFound, "cannot read " + *file);
    }
  }
  Poco::Net::initializeSSL();
  auto tls = std::unique_ptr<TlsContext>(new TlsContext);
  tls->impl_ = std::make_unique<Impl>();
  try {
    Poco::Net::Context::Params params;
    params.privateKeyFile = key_file;
    params.certificateFile = cert_file;
    params.verificationMode = Poco::Net::Context::VERIFY_NONE;  // no client certificates
    params.loadDefaultCAs = false;
    tls->impl_->context = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, params);
    tls->impl_->context->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
  } catch (const Poco::Exception& e) {
    return Status::Error(Status::kTls, "cannot load TLS certificate " + cert_file + " / key " +
                                           key_file + ": " + e.displayText());
  }
  SSL_CTX* ctx = tls->ssl_ctx();
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return Status::Error(Status::kTls,
                         "TLS key " + key_file + " does not match certificate " + cert_file);
  }
  // The loop retries an SSL_write that wanted more room with the same bytes,
  // but the staging buffer may have grown (moved) meanwhile; partial writes
  // let it hand the kernel what fits, like writev.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // POCO's server context caches sessions under its own id; nothing to add.
  *out = std::move(tls);
  return Status::Ok();
}

}  // namespace smws::net
