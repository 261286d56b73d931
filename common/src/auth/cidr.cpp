// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace smws::auth {
namespace {

struct Address {
  bool v6 = false;
  std::array<unsigned char, 16> bytes{};
};

// A bare address (no port, no brackets). IPv4-mapped IPv6 becomes IPv4.
std::optional<Address> parse_bare(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  Address a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) return a;
  unsigned char v6[16];
  if (inet_pton(AF_INET6, buf, v6) != 1) return std::nullopt;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6, kMapped, 12) == 0) {
    std::memcpy(a.bytes.data(), v6 + 12, 4);
    return a;
  }
  a.v6 = true;
  std::memcpy(a.bytes.data(), v6, 16);
  return a;
}

// "ip:port", "[v6]:port", "[v6]", or a bare address.
std::optional<Address> parse_peer(std::string_view peer) {
  while (!peer.empty() && (peer.front() == ' ' || peer.front() == '\t')) peer.remove_prefix(1);
  while (!peer.empty() && (peer.back() == ' ' || peer.back() == '\t')) peer.remove_suffix(1);
  if (!peer.empty() && peer.front() == '[') {
    const std::size_t close = peer.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    return parse_bare(peer.substr(1, close - 1));
  }
  if (auto a = parse_bare(peer)) return a;
  // One colon: IPv4 with a port.
  const std::size_t colon = peer.find(':');
  if (colon != std::string_view::npos && peer.find(':', colon + 1) == std::string_view::npos) {
    auto a = parse_bare(peer.substr(0, colon));
    if (a && !a->v6) return a;
  }
  return std::nullopt;
}

std::string format(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = "";
  inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof buf);
  return buf;
}

bool prefix_equal(const std::array<unsigned char, 16>& x, const std::array<unsigned char, 16>& y, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(x.data(), y.data(), static_cast<std::size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (x[full] & mask) == (y[full] & mask);
}

}  // namespace

Status parse_cidr(std::string_view text, Cidr* out) {
  const std::string shown = "--trusted-proxy " + std::string(text.substr(0, 80));
  const std::size_t slash = text.find('/');
  auto addr = parse_bare(text.substr(0, slash));
  if (!addr) return Status::Error(Status::kUsage, shown + ": not an IPv4 or IPv6 address or CIDR range");
  const int max = addr->v6 ? 128 : 32;
  int prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return Status::Error(Status::kUsage, shown + ": bad prefix length");
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return Status::Error(Status::kUsage, shown + ": bad prefix length");
      prefix = prefix * 10 + (c - '0');
    }
    if (prefix > max) {
      return Status::Error(Status::kUsage, shown + ": prefix /" + std::to_string(prefix) + " is longer than " +
                                               std::to_string(max) + " bits");
    }
  }
  Address network = *addr;
  for (int bit = prefix; bit < max; ++bit) network.bytes[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
  if (network.bytes != addr->bytes) {
    return Status::Error(Status::kUsage, shown + ": host bits set under the /" + std::to_string(prefix) +
                                             " mask (did you mean " + format(network) + "/" +
                                             std::to_string(prefix) + "?)");
  }
  Cidr c;
  c.v6 = network.v6;
  c.address = network.bytes;
  c.prefix = prefix;
  c.text = format(network) + "/" + std::to_string(prefix);
  *out = std::move(c);
  return Status::Ok();
}

bool Cidr::contains(std::string_view peer) const {
  auto a = parse_peer(peer);
  if (!a || a->v6 != v6) return false;
  return prefix_equal(a->bytes, address, prefix);
}

std::optional<std::string> normalise_address(std::string_view peer) {
  auto a = parse_peer(peer);
  if (!a) return std::nullopt;
  return format(*a);
}

Status TrustedProxies::parse(const std::vector<std::string>& values, TrustedProxies* out) {
  TrustedProxies p;
  for (const auto& v : values) {
    Cidr c;
    if (auto st = parse_cidr(v, &c); !st.ok()) return st;
    p.add(std::move(c));
  }
  *out = std::move(p);
  return Status::Ok();
}

bool TrustedProxies::contains(std::string_view peer) const {
  for (const auto& r : ranges_) {
    if (r.contains(peer)) return true;
  }
  return false;
}

std::optional<std::string> forwarded_client(std::string_view xff) {
  const std::size_t comma = xff.rfind(',');
  std::string_view last = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
  auto a = parse_peer(last);
  if (!a) return std::nullopt;
  return format(*a);
}

}  // namespace smws::auth
