// SPDX-License-Identifier: Apache-2.0
// TLS for the event loop: POCO NetSSL loads the certificate and key and builds
// the OpenSSL context; the loop then drives each connection with non-blocking
// SSL_read/SSL_write itself.
//
// Why not POCO's SecureStreamSocket: in POCO 1.11 the SSL* of a secure socket
// is private, so a connection accepted through POCO could not be handed to
// the epoll loop. Only the context comes from POCO.
#pragma once

#include <memory>
#include <string>

#include "smws/status.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace smws::net {

class TlsContext {
 public:
  // Loads a PEM certificate (chain) and private key for the server role
  // into *out. Fails with kNotFound ("cannot read FILE") for a file that
  // cannot be opened, kTls for one that does not load or a key that does not
  // match the certificate.
  static Status load_server(const std::string& cert_file, const std::string& key_file,
                            std::unique_ptr<TlsContext>* out);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* ssl_ctx() const;

 private:
  TlsContext() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace smws::net
