// SPDX-License-Identifier: Apache-2.0
#include "smws/redis_url.h"

#include <cctype>

namespace smws::redis {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX; false on a malformed escape.
bool percent_decode(const std::string& in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      *out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    *out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::string RedisUrl::display() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port) + "/" + std::to_string(db);
}

Status parse_url(const std::string& text, RedisUrl* out) {
  auto bad = [&](const std::string& why) {
    return Status::Error(Status::kUsage, "--redis '" + text + "': " + why +
                                             " (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
  };
  const std::string scheme = "redis://";
  if (text.compare(0, scheme.size(), scheme) != 0) {
    if (text.compare(0, 9, "rediss://") == 0) return bad("TLS to Redis (rediss://) is not supported");
    return bad("must start with redis://");
  }
  std::string rest = text.substr(scheme.size());
  RedisUrl url;
  // Userinfo ends at the LAST '@' before the path: a raw '@' in a password
  // is then still understood.
  size_t slash = rest.find('/');
  std::string authority = slash == std::string::npos ? rest : rest.substr(0, slash);
  std::string path = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
  size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    std::string userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    std::string user = colon == std::string::npos ? std::string() : userinfo.substr(0, colon);
    std::string password = colon == std::string::npos ? userinfo : userinfo.substr(colon + 1);
    if (!percent_decode(user, &url.user)) return bad("bad %-escape in the user name");
    if (!percent_decode(password, &url.password)) return bad("bad %-escape in the password");
    if (url.password.empty()) return bad("empty password after '@'");
  }
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unclosed '[' in the host");
    url.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("unexpected text after the IPv6 host");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port after ':'");
    }
  } else {
    size_t colon = authority.find(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port after ':'");
    }
  }
  if (url.host.empty()) return bad("no host");
  for (char c : url.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '?' || c == '#' ||
        c == '@' || c == '[' || c == ']')
      return bad("invalid character in the host");
  }
  if (!port_text.empty()) {
    if (!all_digits(port_text) || port_text.size() > 5) return bad("port must be 1-65535");
    unsigned long p = std::stoul(port_text);
    if (p < 1 || p > 65535) return bad("port must be 1-65535");
    url.port = static_cast<uint16_t>(p);
  }
  if (!path.empty()) {
    if (!all_digits(path) || path.size() > 5) return bad("the database after '/' must be a number");
    unsigned long d = std::stoul(path);
    if (d > 65535) return bad("the database after '/' must be a number");
    url.db = static_cast<int>(d);
  }
  *out = std::move(url);
  return Status::Ok();
}

std::string HostPort::display() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Status parse_sentinel(const std::string& text, HostPort* out) {
  auto bad = [&](const std::string& why) {
    return Status::Error(Status::kUsage, "--redis-sentinel '" + text + "': " + why + " (expected HOST[:PORT])");
  };
  if (text.empty()) return bad("empty");
  if (text.find_first_of("@/") != std::string::npos || text.find("://") != std::string::npos) {
    return bad("a Sentinel is HOST:PORT, not a URL");
  }
  RedisUrl url;
  const bool has_port = text.back() != ']' && text.find(':', text.rfind(']') == std::string::npos
                                                                   ? 0
                                                                   : text.rfind(']')) != std::string::npos;
  Status st = parse_url("redis://" + text, &url);
  if (!st.ok()) {
    // "--redis 'redis://TEXT': why (expected ...)": keep the why.
    const size_t from = st.message.find("': ");
    const size_t to = st.message.rfind(" (expected");
    return bad(from != std::string::npos && to != std::string::npos && to > from + 3
                   ? st.message.substr(from + 3, to - from - 3)
                   : st.message);
  }
  out->host = url.host;
  out->port = has_port ? url.port : 26379;
  return Status::Ok();
}

}  // namespace smws::redis
