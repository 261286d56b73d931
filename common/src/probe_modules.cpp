// SPDX-License-Identifier: Apache-2.0
#include "smws/probe_modules.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>

#include "smws/ascii.h"

namespace smws {
namespace {

using json = nlohmann::json;

Status bad(const std::string& where, const std::string& what) {
  return Status::Error(Status::kBadInput, where + ": " + what);
}

bool glob(const std::string& pattern, std::string_view text) {
  return ::fnmatch(pattern.c_str(), std::string(text).c_str(), 0) == 0;
}

// Loopback by its text alone, never by a lookup: "localhost", a dotted IPv4
// address in 127.0.0.0/8 (all four parts, so "127.0.0.1.evil.com" is not),
// or ::1.
bool is_loopback(std::string_view host) {
  const std::string h = ascii_lower(host);
  if (h == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Status read_seconds(const json& v, const std::string& where, bool zero_ok, double* out) {
  if (!v.is_number()) return bad(where, "expected a number of seconds");
  const double s = v.get<double>();
  if (!std::isfinite(s) || s < 0 || (!zero_ok && s == 0) || s > 86400)
    return bad(where, zero_ok ? "expected seconds from 0 to 86400" : "expected seconds > 0, at most 86400");
  *out = s;
  return Status::Ok();
}

Status read_strings(const json& v, const std::string& where, std::vector<std::string>* out) {
  if (v.is_string()) {
    out->push_back(v.get<std::string>());
    return Status::Ok();
  }
  if (!v.is_array()) return bad(where, "expected a string or an array of strings");
  for (const auto& item : v) {
    if (!item.is_string()) return bad(where, "expected strings only");
    out->push_back(item.get<std::string>());
  }
  return Status::Ok();
}

Status read_bool(const json& v, const std::string& where, bool* out) {
  if (!v.is_boolean()) return bad(where, "expected true or false");
  *out = v.get<bool>();
  return Status::Ok();
}

bool valid_header_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c == ':' || static_cast<unsigned char>(c) >= 0x7f) return false;
  }
  return true;
}

bool valid_module_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

Status parse_module(const std::string& name, const json& v, ProbeModule* m) {
  const std::string at = "modules." + name;
  if (!valid_module_name(name)) return bad(at, "a module name is 1 to 64 of [A-Za-z0-9_.-]");
  if (!v.is_object()) return bad(at, "expected an object");
  m->name = name;
  bool duration_given = false;
  for (const auto& [key, value] : v.items()) {
    const std::string where = at + "." + key;
    Status s;
    if (key == "duration") {
      s = read_seconds(value, where, false, &m->duration_s);
      duration_given = true;
    } else if (key == "send") {
      s = read_strings(value, where, &m->send);
    } else if (key == "expect") {
      json e = value.is_string() ? json{{"regex", value}} : value;
      if (!e.is_object()) return bad(where, "expected a regex string or {\"regex\": …, \"min_messages\": N}");
      for (const auto& [k, x] : e.items()) {
        if (k == "regex") {
          if (!x.is_string()) return bad(where + ".regex", "expected a string");
          m->expect_regex_text = x.get<std::string>();
          try {
            m->expect_regex.emplace(m->expect_regex_text, std::regex::ECMAScript | std::regex::optimize);
          } catch (const std::regex_error& err) {
            return bad(where + ".regex", std::string("not a valid regular expression: ") + err.what());
          }
        } else if (k == "min_messages") {
          if (!x.is_number_unsigned()) return bad(where + ".min_messages", "expected a whole number >= 0");
          m->expect_min_messages = x.get<size_t>();
        } else {
          return bad(where + "." + k, "unknown key (known: regex, min_messages)");
        }
      }
    } else if (key == "headers") {
      if (!value.is_object()) return bad(where, "expected an object of \"Name\": \"value\"");
      for (const auto& [h, hv] : value.items()) {
        if (!valid_header_name(h)) return bad(where + "." + h, "not a valid header name");
        if (!hv.is_string()) return bad(where + "." + h, "expected a string value");
        const std::string text = hv.get<std::string>();
        if (text.find_first_of("\r\n") != std::string::npos) return bad(where + "." + h, "a value has no line breaks");
        m->headers.emplace_back(h, text);
      }
    } else if (key == "token_file") {
      if (!value.is_string() || value.get<std::string>().empty()) return bad(where, "expected a file name");
      m->token_file = value.get<std::string>();
    } else if (key == "subprotocol") {
      s = read_strings(value, where, &m->subprotocols);
    } else if (key == "origin") {
      if (!value.is_string()) return bad(where, "expected a string");
      m->origin = value.get<std::string>();
    } else if (key == "insecure") {
      s = read_bool(value, where, &m->insecure);
    } else if (key == "deflate") {
      s = read_bool(value, where, &m->deflate);
    } else if (key == "ping") {
      s = read_seconds(value, where, true, &m->ping_s);
    } else if (key == "confirm") {
      s = read_bool(value, where, &m->confirm);
    } else if (key == "find_idle_timeout") {
      s = read_seconds(value, where, true, &m->find_idle_timeout_s);
    } else {
      return bad(where,
                 "unknown key (known: duration, send, expect, headers, token_file, subprotocol, origin, insecure, "
                 "deflate, ping, confirm, find_idle_timeout)");
    }
    if (!s.ok()) return s;
  }
  if (m->find_idle_timeout_s > 0) {
    // The search is the probe, and it must fit the probe's bound: the first
    // trial alone holds find_idle_timeout.
    if (!duration_given) m->duration_s = 3 * m->find_idle_timeout_s + 5;
    if (m->duration_s < m->find_idle_timeout_s + 1)
      return bad(at + ".duration", "must be at least find_idle_timeout + 1 s: the search holds trials that long");
    if (!m->send.empty() || m->ping_s > 0 || m->has_expect())
      return bad(at, "find_idle_timeout holds silent connections: it cannot be combined with send, ping or expect");
  }
  return Status::Ok();
}

}  // namespace

std::optional<TargetPattern> parse_target_pattern(std::string_view text, std::string* error) {
  TargetPattern p;
  p.text = std::string(text);
  const std::string lower = ascii_lower(text);
  size_t rest = 0;
  for (const auto& [scheme, tls] : {std::pair<const char*, bool>{"ws://", false}, {"http://", false},
                                    {"wss://", true}, {"https://", true}}) {
    if (lower.rfind(scheme, 0) == 0) {
      p.tls = tls;
      rest = std::string_view(scheme).size();
      break;
    }
  }
  if (rest == 0) {
    *error = "'" + p.text + "': expected ws://HOST[:PORT][/PATH] or wss://… (globs allowed in each part)";
    return std::nullopt;
  }
  std::string authority = lower.substr(rest);
  std::string path = "*";
  const size_t slash = authority.find('/');
  if (slash != std::string::npos) {
    path = std::string(text.substr(rest + slash));  // paths keep their case
    authority.resize(slash);
  }
  std::string host = authority, port = p.tls ? "443" : "80";
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) {
      *error = "'" + p.text + "': an IPv6 host needs its closing ']'";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        *error = "'" + p.text + "': expected ':PORT' after the IPv6 host";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty() || port.empty() || authority.find('@') != std::string::npos) {
    *error = "'" + p.text + "': expected a host (and a port after ':'), no user info";
    return std::nullopt;
  }
  p.host = host;
  p.port = port;
  p.path = path;
  return p;
}

bool target_matches(const TargetPattern& p, bool tls, std::string_view host, uint16_t port,
                    std::string_view target) {
  return p.tls == tls && glob(p.host, ascii_lower(host)) && glob(p.port, std::to_string(port)) &&
         glob(p.path, target);
}

const ProbeModule* ExporterConfig::module(std::string_view name) const {
  for (const auto& m : modules) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string ExporterConfig::module_names() const {
  std::string out;
  for (const auto& m : modules) out += (out.empty() ? "" : ", ") + m.name;
  return out;
}

bool ExporterConfig::allowed(bool tls, std::string_view host, uint16_t port, std::string_view target) const {
  if (!allow_targets_given) return is_loopback(host);
  for (const auto& p : allow_targets) {
    if (target_matches(p, tls, host, port, target)) return true;
  }
  return false;
}

ExporterConfig default_exporter_config() {
  ExporterConfig c;
  ProbeModule m;
  m.name = "default";
  c.modules.push_back(std::move(m));
  return c;
}

Status parse_exporter_config(std::string_view text, ExporterConfig* out) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return Status::Error(Status::kBadInput, "not valid JSON");
  if (!doc.is_object()) return Status::Error(Status::kBadInput, "expected a JSON object at the top");
  ExporterConfig c;
  for (const auto& [key, value] : doc.items()) {
    if (key == "modules") {
      if (!value.is_object()) return bad("modules", "expected an object of NAME: {…}");
      for (const auto& [name, body] : value.items()) {
        ProbeModule m;
        Status s = parse_module(name, body, &m);
        if (!s.ok()) return s;
        c.modules.push_back(std::move(m));
      }
    } else if (key == "allow_targets") {
      std::vector<std::string> globs;
      Status s = read_strings(value, "allow_targets", &globs);
      if (!s.ok()) return s;
      c.allow_targets_given = true;
      for (const auto& g : globs) {
        std::string error;
        auto p = parse_target_pattern(g, &error);
        if (!p) return bad("allow_targets", error);
        c.allow_targets.push_back(std::move(*p));
      }
    } else if (key == "watch") {
      if (!value.is_array()) return bad("watch", "expected an array of URLs or {\"target\": URL, \"module\": NAME}");
      for (const auto& w : value) {
        WatchEntry entry;
        if (w.is_string()) {
          entry.target = w.get<std::string>();
        } else if (w.is_object()) {
          for (const auto& [k, x] : w.items()) {
            if (k == "target" && x.is_string()) {
              entry.target = x.get<std::string>();
            } else if (k == "module" && x.is_string()) {
              entry.module = x.get<std::string>();
            } else {
              return bad("watch", "entries have \"target\" and \"module\" (strings), not '" + k + "'");
            }
          }
        } else {
          return bad("watch", "expected a URL or {\"target\": URL, \"module\": NAME}");
        }
        if (entry.target.empty()) return bad("watch", "an entry without a target");
        c.watch.push_back(std::move(entry));
      }
    } else {
      return bad(key, "unknown key (known: modules, allow_targets, watch)");
    }
  }
  if (!c.module("default")) {
    ProbeModule m;
    m.name = "default";
    c.modules.insert(c.modules.begin(), std::move(m));
  }
  for (const auto& w : c.watch) {
    if (!w.module.empty() && !c.module(w.module))
      return bad("watch", "'" + w.target + "' names module '" + w.module + "', which is not defined (known: " +
                              c.module_names() + ")");
  }
  *out = std::move(c);
  return Status::Ok();
}

bool expect_matches(const ProbeModule& m, std::string_view message) {
  if (!m.expect_regex) return false;
  const std::string_view head = message.substr(0, kExpectScanBytes);
  try {
    return std::regex_search(head.begin(), head.end(), *m.expect_regex);
  } catch (const std::regex_error&) {
    return false;  // too complex for this message (error_complexity / error_stack)
  }
}

}  // namespace smws
