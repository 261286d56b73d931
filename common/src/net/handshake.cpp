// SPDX-License-Identifier: Apache-2.0
#include "smws/net/handshake.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/URI.h>

#include <algorithm>
#include <sstream>

#include "smws/ascii.h"

namespace smws::net {
namespace {

// Does a comma-separated header value contain token (case-insensitive)?
bool header_has_token(const std::string& value, std::string_view token) {
  std::string v = ascii_lower(value);
  std::string t = ascii_lower(token);
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == std::string::npos) end = v.size();
    size_t a = start, b = end;
    while (a < b && (v[a] == ' ' || v[a] == '\t')) ++a;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) --b;
    if (v.compare(a, b - a, t) == 0) return true;
    start = end + 1;
  }
  return false;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// "http://Host:80/" → "host:80"; "" when it has no authority.
std::string authority_of(std::string_view origin) {
  size_t scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view rest = origin.substr(scheme_end + 3);
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) rest = rest.substr(0, slash);
  return ascii_lower(rest);
}

std::string normalize_origin(std::string_view origin) {
  std::string o = ascii_lower(origin);
  while (!o.empty() && o.back() == '/') o.pop_back();
  return o;
}

}  // namespace

const std::string* HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? nullptr : &it->second;
}

const std::string* HttpRequest::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

size_t find_head_end(std::string_view bytes) {
  size_t pos = bytes.find("\r\n\r\n");
  return pos == std::string_view::npos ? std::string_view::npos : pos + 4;
}

std::optional<HttpRequest> parse_request_head(std::string_view head, std::string* error) {
  HttpRequest out;
  try {
    std::istringstream in{std::string(head)};
    Poco::Net::HTTPRequest request;
    request.read(in);
    out.method = request.getMethod();
    out.target = request.getURI();
    out.version = request.getVersion();
    for (const auto& [name, value] : request) {
      std::string key = ascii_lower(name);
      auto [it, inserted] = out.headers.emplace(key, value);
      if (!inserted) it->second += ", " + value;
    }
    if (out.target.empty() || out.target[0] != '/') {
      *error = "request target must be an absolute path";
      return std::nullopt;
    }
    Poco::URI uri(out.target);
    out.path = uri.getPath();
    for (auto& [k, v] : uri.getQueryParameters()) out.query.emplace_back(k, v);
  } catch (const Poco::Exception& e) {
    *error = "malformed HTTP request: " + e.displayText();
    return std::nullopt;
  } catch (const std::exception& e) {
    *error = std::string("malformed HTTP request: ") + e.what();
    return std::nullopt;
  }
  if (out.version != "HTTP/1.1" && out.version != "HTTP/1.0") {
    *error = "unsupported HTTP version " + out.version;
    return std::nullopt;
  }
  return out;
}

HttpReply text_reply(int status, std::string body) {
  HttpReply reply;
  reply.status = status;
  reply.body = std::move(body);
  if (!reply.body.empty() && reply.body.back() != '\n') reply.body += '\n';
  return reply;
}

std::string serialize_reply(const HttpReply& reply, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " " +
                    reason_phrase(reply.status) + "\r\n";
  out += "Server: ws-relay\r\n";
  out += "Content-Type: " + reply.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += "Connection: close\r\n";
  for (const auto& [k, v] : reply.headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  if (!head_only) out += reply.body;
  return out;
}

std::string websocket_accept_key(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(client_key);
  input += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(n));
}

bool is_upgrade_request(const HttpRequest& request) {
  const std::string* upgrade = request.header("upgrade");
  return upgrade && header_has_token(*upgrade, "websocket");
}

std::optional<HttpReply> check_upgrade(const HttpRequest& request) {
  if (request.method != "GET") {
    HttpReply r = text_reply(405, "WebSocket upgrade needs GET, not " + request.method);
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (request.version != "HTTP/1.1") {
    return text_reply(400, "WebSocket upgrade needs HTTP/1.1");
  }
  const std::string* connection = request.header("connection");
  if (!connection || !header_has_token(*connection, "upgrade")) {
    return text_reply(400, "WebSocket upgrade needs 'Connection: Upgrade'");
  }
  const std::string* version = request.header("sec-websocket-version");
  if (!version || *version != "13") {
    HttpReply r = text_reply(426, "WebSocket version 13 required");
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
    return r;
  }
  const std::string* key = request.header("sec-websocket-key");
  if (!key) return text_reply(400, "missing Sec-WebSocket-Key header");
  // base64 of 16 bytes: 22 characters then "==".
  bool ok = key->size() == 24 && key->compare(22, 2, "==") == 0;
  for (size_t i = 0; ok && i < 22; ++i) {
    char c = (*key)[i];
    ok = std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
  }
  if (!ok) return text_reply(400, "Sec-WebSocket-Key is not base64 of 16 bytes");
  return std::nullopt;
}

std::string switching_protocols_response(std::string_view client_key,
                                         std::string_view subprotocol) {
  std::string out = "HTTP/1.1 101 Switching Protocols\r\n";
  out += "Upgrade: websocket\r\n";
  out += "Connection: Upgrade\r\n";
  out += "Sec-WebSocket-Accept: " + websocket_accept_key(client_key) + "\r\n";
  if (!subprotocol.empty()) {
    out += "Sec-WebSocket-Protocol: ";
    out += subprotocol;
    out += "\r\n";
  }
  out += "Server: ws-relay\r\n";
  out += "\r\n";
  return out;
}

bool origin_allowed(const HttpRequest& request, const std::vector<std::string>& allowed) {
  const std::string* origin = request.header("origin");
  if (!origin) return true;
  if (allowed.empty()) {
    const std::string* host = request.header("host");
    return host && !authority_of(*origin).empty() && authority_of(*origin) == ascii_lower(*host);
  }
  std::string o = normalize_origin(*origin);
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    return a == "*" || normalize_origin(a) == o;
  });
}

namespace {

// Calls f(name) for each comma-separated entry of Sec-WebSocket-Protocol
// (surrounding blanks removed) until f returns true.
template <typename F>
bool each_subprotocol(const HttpRequest& request, F f) {
  const std::string* value = request.header("sec-websocket-protocol");
  if (!value) return false;
  std::string_view v(*value);
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == std::string_view::npos) end = v.size();
    size_t a = start, b = end;
    while (a < b && (v[a] == ' ' || v[a] == '\t')) ++a;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) --b;
    if (b > a && f(v.substr(a, b - a))) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

bool offers_subprotocol(const HttpRequest& request, std::string_view name) {
  return each_subprotocol(request, [&](std::string_view p) { return p == name; });
}

std::string selected_subprotocol(const HttpRequest& request) {
  return offers_subprotocol(request, kSubprotocol) ? std::string(kSubprotocol) : std::string();
}

std::vector<std::string> presented_tokens(const HttpRequest& request) {
  std::vector<std::string> out;
  if (const std::string* auth = request.header("authorization")) {
    static constexpr std::string_view kBearer = "bearer ";
    if (auth->size() > kBearer.size() && ascii_lower(auth->substr(0, kBearer.size())) == kBearer) {
      out.push_back(auth->substr(kBearer.size()));
    }
  }
  each_subprotocol(request, [&](std::string_view p) {
    if (p.size() > kBearerSubprotocolPrefix.size() &&
        p.substr(0, kBearerSubprotocolPrefix.size()) == kBearerSubprotocolPrefix) {
      out.emplace_back(p.substr(kBearerSubprotocolPrefix.size()));
      return true;
    }
    return false;
  });
  if (const std::string* q = request.query_param("token")) out.push_back(*q);
  return out;
}

std::optional<std::string> request_token(const HttpRequest& request) {
  std::vector<std::string> all = presented_tokens(request);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

bool token_ok(const HttpRequest& request, const std::string& token) {
  if (token.empty()) return true;
  bool ok = false;
  // Every presented token is compared (no early exit), each in constant time.
  for (const std::string& t : presented_tokens(request)) ok |= constant_time_equal(t, token);
  return ok;
}

std::string normalize_host_name(std::string_view name) {
  std::string n = ascii_lower(name);
  while (!n.empty() && n.back() == '.') n.pop_back();
  if (n.find(':') != std::string::npos && n.front() != '[') n = "[" + n + "]";
  return n;
}

std::string host_name(const HttpRequest& request) {
  const std::string* host = request.header("host");
  if (!host) return {};
  std::string_view h(*host);
  if (!h.empty() && h.front() == '[') {
    size_t close = h.find(']');
    return normalize_host_name(close == std::string_view::npos ? h : h.substr(0, close + 1));
  }
  size_t colon = h.rfind(':');
  return normalize_host_name(colon == std::string_view::npos ? h : h.substr(0, colon));
}

bool host_allowed(const HttpRequest& request, const HostRule& rule) {
  if (!rule.loopback && rule.allow_hosts.empty()) return true;
  if (!request.header("host")) return true;
  std::string name = host_name(request);
  if (rule.loopback && (name == "localhost" || name == "127.0.0.1" || name == "[::1]")) return true;
  return std::find(rule.allow_hosts.begin(), rule.allow_hosts.end(), name) != rule.allow_hosts.end();
}

bool is_loopback_address(std::string_view host) {
  std::string h = ascii_lower(host);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

}  // namespace smws::net
