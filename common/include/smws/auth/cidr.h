// SPDX-License-Identifier: Apache-2.0
// --trusted-proxy CIDR (repeatable): the address ranges whose requests may
// name their user in headers (an SSO proxy such as oauth2-proxy or nginx
// auth_request in front of the relay), and the client address such a proxy
// forwards in X-Forwarded-For.
//
// CIDR: "10.0.0.0/8", "127.0.0.2", "::1", "fd00::/8". A bare address is /32
// (IPv4) or /128 (IPv6). Host bits set under the mask ("10.0.0.1/8") are an
// error: it is almost always a typo for a narrower range. An IPv4-mapped
// IPv6 peer (::ffff:10.1.2.3, what a dual-stack listener reports) matches
// IPv4 ranges.
//
// Peer addresses are matched as WsServer formats them: "ip:port",
// "[v6]:port", or a bare address.
//
// X-Forwarded-For rule: only the right-most entry is believed. Every proxy
// appends the address it received the request from, so the right-most entry
// is the one our trusted proxy added; everything to its left came with the
// request and may be forged by the client. We do not walk further left past
// entries that are themselves trusted (nginx's real_ip_recursive): with a
// wide trusted range (127.0.0.0/8) that walk would end in an entry the
// client wrote. With a chain of proxies the record names the last hop's
// view of the client, which is what the trusted proxy can vouch for. A
// right-most entry that is not an IP address (or "unknown") gives no client
// address: the caller keeps the proxy's own.
//
// Threads: plain values; TrustedProxies is immutable after setup and its
// const methods may be called from any thread.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smws/status.h"

namespace smws::auth {

struct Cidr {
  bool v6 = false;
  std::array<unsigned char, 16> address{};  // IPv4 in the first 4 bytes
  int prefix = 0;                            // 0..32 or 0..128
  std::string text;                          // as normalised: "10.0.0.0/8"

  bool contains(std::string_view address) const;
};

// kUsage with a message naming the value ("--trusted-proxy 10.0.0.1/8: host
// bits set under the /8 mask (did you mean 10.0.0.0/8?)").
Status parse_cidr(std::string_view text, Cidr* out);

// The address part of "ip:port" / "[v6]:port" / "ip", normalised (inet_ntop;
// an IPv4-mapped IPv6 address as IPv4), or nullopt when it is not an IP
// address.
std::optional<std::string> normalise_address(std::string_view peer);

class TrustedProxies {
 public:
  void add(Cidr cidr) { ranges_.push_back(std::move(cidr)); }
  // Parses each --trusted-proxy value; the first bad one is the error.
  static Status parse(const std::vector<std::string>& values, TrustedProxies* out);

  bool empty() const { return ranges_.empty(); }
  bool contains(std::string_view peer) const;
  const std::vector<Cidr>& ranges() const { return ranges_; }

 private:
  std::vector<Cidr> ranges_;
};

// The client address a trusted proxy forwarded: the right-most entry of the
// X-Forwarded-For value (see the rule above), normalised; nullopt when the
// header is empty or that entry is not an address.
std::optional<std::string> forwarded_client(std::string_view x_forwarded_for);

}  // namespace smws::auth
