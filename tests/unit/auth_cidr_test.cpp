// SPDX-License-Identifier: Apache-2.0
// --trusted-proxy ranges and X-Forwarded-For (auth/cidr.h).
#include <catch2/catch.hpp>

#include "smws/auth/cidr.h"

using namespace smws::auth;
using smws::Status;

namespace {
Cidr cidr(const std::string& text) {
  Cidr c;
  Status st = parse_cidr(text, &c);
  INFO(st.message);
  REQUIRE(st.ok());
  return c;
}
}  // namespace

TEST_CASE("IPv4 ranges match peers as WsServer formats them", "[auth][cidr]") {
  Cidr c = cidr("10.1.0.0/16");
  CHECK(c.text == "10.1.0.0/16");
  CHECK(c.contains("10.1.2.3:5555"));
  CHECK(c.contains("10.1.255.255"));
  CHECK_FALSE(c.contains("10.2.0.1:80"));
  CHECK(c.contains("[::ffff:10.1.2.3]:80"));  // a dual-stack listener's view of an IPv4 peer
  CHECK_FALSE(c.contains("garbage"));
  CHECK_FALSE(c.contains("[::1]:80"));
  Cidr all = cidr("0.0.0.0/0");
  CHECK(all.contains("192.0.2.1:1"));
  CHECK_FALSE(all.contains("[2001:db8::1]:1"));
}

TEST_CASE("a bare address is one host: /32 or /128", "[auth][cidr]") {
  Cidr one = cidr("127.0.0.2");
  CHECK(one.text == "127.0.0.2/32");
  CHECK(one.contains("127.0.0.2:40000"));
  CHECK_FALSE(one.contains("127.0.0.1:40000"));
  Cidr six = cidr("::1");
  CHECK(six.text == "::1/128");
  CHECK(six.contains("[::1]:8080"));
  CHECK(six.contains("::1"));
  CHECK_FALSE(six.contains("[::2]:8080"));
}

TEST_CASE("IPv6 ranges with prefixes that are not byte multiples", "[auth][cidr]") {
  Cidr c = cidr("fc00::/7");
  CHECK(c.contains("[fdff::1]:1"));
  CHECK(c.contains("[fc00::1]:1"));
  CHECK_FALSE(c.contains("[fe00::1]:1"));
  Cidr v4 = cidr("192.168.0.0/23");
  CHECK(v4.contains("192.168.1.200:9"));
  CHECK_FALSE(v4.contains("192.168.2.1:9"));
}

TEST_CASE("bad ranges are refused with what is wrong", "[auth][cidr]") {
  Cidr c;
  CHECK(parse_cidr("10.0.0.1/8", &c).message ==
        "--trusted-proxy 10.0.0.1/8: host bits set under the /8 mask (did you mean 10.0.0.0/8?)");
  CHECK(parse_cidr("fd00::/7", &c).message == "--trusted-proxy fd00::/7: host bits set under the /7 mask (did you mean fc00::/7?)");
  CHECK(parse_cidr("10.0.0.0/33", &c).message == "--trusted-proxy 10.0.0.0/33: prefix /33 is longer than 32 bits");
  CHECK(parse_cidr("::/129", &c).message == "--trusted-proxy ::/129: prefix /129 is longer than 128 bits");
  CHECK(parse_cidr("10.0.0.0/", &c).message == "--trusted-proxy 10.0.0.0/: bad prefix length");
  CHECK(parse_cidr("10.0.0.0/x", &c).message == "--trusted-proxy 10.0.0.0/x: bad prefix length");
  CHECK(parse_cidr("proxy.local", &c).message ==
        "--trusted-proxy proxy.local: not an IPv4 or IPv6 address or CIDR range");
  CHECK(parse_cidr("", &c).code == Status::kUsage);
  TrustedProxies p;
  CHECK(TrustedProxies::parse({"127.0.0.2", "10.0.0.1/8"}, &p).code == Status::kUsage);
  REQUIRE(TrustedProxies::parse({"127.0.0.2", "10.0.0.0/8"}, &p).ok());
  CHECK(p.contains("10.9.9.9:1"));
  CHECK(p.contains("127.0.0.2:1"));
  CHECK_FALSE(p.contains("127.0.0.1:1"));
}

TEST_CASE("X-Forwarded-For: only the right-most entry, the one the trusted proxy added, counts", "[auth][cidr]") {
  CHECK(forwarded_client("203.0.113.7") == "203.0.113.7");
  // A client that sends its own X-Forwarded-For gets the proxy's entry appended:
  // the forged left part is never believed.
  CHECK(forwarded_client("10.9.9.9, 203.0.113.7") == "203.0.113.7");
  CHECK(forwarded_client("1.1.1.1,2.2.2.2 , 198.51.100.4 ") == "198.51.100.4");
  CHECK(forwarded_client("2001:db8::7") == "2001:db8::7");
  CHECK(forwarded_client("[2001:db8::7]:443") == "2001:db8::7");
  CHECK(forwarded_client("::ffff:192.0.2.1") == "192.0.2.1");
  CHECK(forwarded_client("192.0.2.1:5000") == "192.0.2.1");
  CHECK_FALSE(forwarded_client("203.0.113.7, unknown"));
  CHECK_FALSE(forwarded_client(""));
  CHECK(normalise_address("[::1]:80") == "::1");
  CHECK(normalise_address("127.0.0.1:80") == "127.0.0.1");
}
