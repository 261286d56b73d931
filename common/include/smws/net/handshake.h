// SPDX-License-Identifier: Apache-2.0
// HTTP side of the WebSocket server, socket-free so it can be unit-tested:
// parsing a request head (POCO's HTTPRequest does the parsing), the RFC 6455
// upgrade checks and Sec-WebSocket-Accept, Origin and token checks, and the
// bytes of an HTTP response.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smws::net {

// A request head is refused (431) past this size: a browser's upgrade request
// with cookies is ~1-2 KiB, so 16 KiB leaves room without letting a client
// make us buffer without bound.
inline constexpr size_t kMaxRequestHead = 16 * 1024;

struct HttpRequest {
  std::string method;
  std::string target;   // as sent: path plus query
  std::string path;     // percent-decoded path, no query
  std::string version;  // "HTTP/1.1"
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::map<std::string, std::string> headers;  // lower-case names; repeated ones joined with ", "
  std::string peer;     // "ip:port" of the TCP peer

  const std::string* header(const std::string& lower_name) const;
  const std::string* query_param(std::string_view name) const;
};

// Position just past the "\r\n\r\n" ending the head, or npos while incomplete.
size_t find_head_end(std::string_view bytes);

// Parses a complete request head. nullopt and *error on malformed input.
std::optional<HttpRequest> parse_request_head(std::string_view head, std::string* error);

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

HttpReply text_reply(int status, std::string body);

// The full response bytes, with Content-Length and "Connection: close";
// head_only omits the body (HEAD requests).
std::string serialize_reply(const HttpReply& reply, bool head_only);

// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
std::string websocket_accept_key(std::string_view client_key);

// True when the request asks for a WebSocket upgrade (Upgrade: websocket).
bool is_upgrade_request(const HttpRequest& request);

// RFC 6455 §4.2.1 checks of an upgrade request: GET, HTTP/1.1, Connection
// contains "upgrade", version 13, a key that is base64 of 16 bytes.
// Returns the refusal to send (400 or 426 naming the problem) or nullopt.
std::optional<HttpReply> check_upgrade(const HttpRequest& request);

// The 101 response completing the handshake; a non-empty subprotocol is
// named in Sec-WebSocket-Protocol (it must be one the client offered).
std::string switching_protocols_response(std::string_view client_key,
                                         std::string_view subprotocol = {});

// The subprotocol the relay speaks. A browser cannot set Authorization on a
// WebSocket, so it may offer its token as a second subprotocol,
// "smws.bearer.TOKEN", beside this one (as Kubernetes does): the server then
// selects kSubprotocol and never echoes the token.
inline constexpr std::string_view kSubprotocol = "smws.v1";
inline constexpr std::string_view kBearerSubprotocolPrefix = "smws.bearer.";

// True when the client offered `name` in Sec-WebSocket-Protocol.
bool offers_subprotocol(const HttpRequest& request, std::string_view name);

// What the 101 selects: kSubprotocol when offered, else none (a client that
// offered only others gets none, as before subprotocols were known here).
std::string selected_subprotocol(const HttpRequest& request);

// Origin policy for upgrades: no Origin header → allowed (non-browser
// clients); allowed list empty → only the same host (Origin's host[:port]
// equals the Host header); otherwise an exact match (scheme://host[:port],
// trailing '/' ignored, case-insensitive) or "*".
bool origin_allowed(const HttpRequest& request, const std::vector<std::string>& allowed);

// The tokens a request presents, in this order: "Authorization: Bearer T",
// the subprotocol "smws.bearer.T", "?token=T" (each at most once). Empty
// when it presents none. For whoever authenticates (token_ok, an
// authenticator that takes "an optional token").
std::vector<std::string> presented_tokens(const HttpRequest& request);
// The first of presented_tokens, if any.
std::optional<std::string> request_token(const HttpRequest& request);

// Token check: any presented token equal to `token`. Empty token → allowed.
// The comparison takes the same time for every wrong token of a given length.
bool token_ok(const HttpRequest& request, const std::string& token);

// Which Host names a server answers (DNS rebinding: a page of another site
// whose name now resolves to 127.0.0.1 sends its own name as Host).
struct HostRule {
  // --listen is a loopback address: localhost, 127.0.0.1 and [::1] (any
  // port) are accepted besides allow_hosts.
  bool loopback = false;
  // --allow-host NAMEs (lower case, no port; IPv6 in brackets). On a
  // loopback listener they add to the three names; elsewhere, when given,
  // they are the only names accepted.
  std::vector<std::string> allow_hosts;
};

// "Example.COM." -> "example.com", "::1" -> "[::1]": how allow_hosts are kept.
std::string normalize_host_name(std::string_view name);

// The request's Host name without its port, normalized; "" without a Host.
std::string host_name(const HttpRequest& request);

// Whether the rule accepts the request's Host. A request without Host (HTTP
// /1.0, a non-browser tool) is accepted: a browser always sends one, and the
// rule is against browsers made to talk to us under another site's name.
bool host_allowed(const HttpRequest& request, const HostRule& rule);

// 127.0.0.0/8, ::1 or "localhost": an address only this machine reaches.
bool is_loopback_address(std::string_view host);

}  // namespace smws::net
